"""Child processes that end with their parent, even one killed (SIGKILL, the OOM killer): a
watchdog thread exits once the parent pid changes. Not ``PR_SET_PDEATHSIG``: it fires when the
starting *thread* ends, and workers are started from short-lived threads."""

from __future__ import annotations

import os
import threading
import time

#: How often the watchdog looks at its parent, seconds.
WATCH_S = 0.5


def exit_with_parent(parent_pid: int) -> None:
    """Make this process exit when ``parent_pid`` (its parent now) exits; call it first thing."""
    if os.getppid() != parent_pid:  # the parent died before the watch began
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_S)
    os._exit(1)

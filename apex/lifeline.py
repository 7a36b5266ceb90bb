"""Child processes that end with their parent.

A worker process (the embedding job's decoders, the board worker, a refit) holds torch or a
store connection; when its parent is killed (SIGKILL, the OOM killer) or leaves without the
interpreter's teardown, nothing runs in the parent to stop it, so the child must notice by
itself: a watchdog thread exits the child once its parent's pid is no longer its parent (an
orphan is re-parented to init or a subreaper).

Not Linux's ``PR_SET_PDEATHSIG``: it fires when the *thread* that started the child ends, and
the board worker and the refit are started from short-lived or background threads, so it would
kill healthy workers.
"""

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

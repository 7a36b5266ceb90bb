"""The sync's clock: a daemon thread that asks for one push round every N minutes.

Our own, on the public :class:`huggingface_hub.HfApi` only (the rounds call ``create_commit``
with ``CommitOperationAdd`` operations, :mod:`annotation.sync.push`): no subclass of another
library's scheduler, so nothing here depends on its private loop. The first round is asked for
by :class:`annotation.sync.VoteSync` itself (so the order of pushes is known), the wait ends as
soon as :meth:`PushScheduler.stop` is called, and a process that exits without stopping the
sync still gets one last push from ``atexit``.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class PushScheduler:
    """Calls ``trigger`` every ``every`` minutes on a daemon thread until :meth:`stop`.

    Args:
        trigger: queues one push round and returns its future (reusing a round still queued).
        every: minutes between rounds (``settings.sync_minutes``).
        repo_id: the dataset repo the rounds push to (for status and logs).
        final_push: called once at interpreter exit if :meth:`stop` was never called.
    """

    repo_type = "dataset"

    def __init__(
        self,
        trigger: Callable[[], Future],
        *,
        every: float,
        repo_id: str,
        final_push: Callable[[], Any] | None = None,
    ) -> None:
        self.every, self.repo_id = float(every), repo_id
        self._trigger, self._final_push = trigger, final_push
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apex-vote-sync-clock", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def trigger(self) -> Future:
        """Queue a scheduled push now (what the clock does every ``every`` minutes)."""
        return self._trigger()

    def stop(self) -> None:
        """End the clock (a round already running finishes); no push at exit any more."""
        self._stopped.set()
        atexit.unregister(self._at_exit)

    def _run(self) -> None:
        while not self._stopped.wait(self.every * 60):
            self.trigger()

    def _at_exit(self) -> None:
        if not self._stopped.is_set() and self._final_push is not None:
            self._final_push()

"""The sync's own clock: a round every N minutes, nothing after stop, one push at exit."""

from __future__ import annotations

import atexit
import threading
import time
from concurrent.futures import Future

from annotation.sync.scheduler import PushScheduler


def _done() -> Future:
    future: Future = Future()
    future.set_result(None)
    return future


def test_the_clock_asks_for_rounds_until_stopped() -> None:
    ticks = threading.Semaphore(0)

    def trigger() -> Future:
        ticks.release()
        return _done()

    clock = PushScheduler(trigger, every=0.001, repo_id="o/votes")  # every 60 ms
    assert ticks.acquire(timeout=5) and ticks.acquire(timeout=5)  # it keeps ticking
    clock.stop()
    time.sleep(0.1)
    while ticks.acquire(blocking=False):  # a tick that raced the stop
        pass
    time.sleep(0.2)
    assert not ticks.acquire(blocking=False)  # nothing after stop
    assert clock.every == 0.001 and clock.repo_type == "dataset" and clock.repo_id == "o/votes"


def test_exit_pushes_once_unless_stopped(monkeypatch) -> None:
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)  # the interpreter's exit hook
    monkeypatch.setattr(atexit, "unregister", registered.remove)
    pushes = []
    clock = PushScheduler(_done, every=60, repo_id="o/votes", final_push=lambda: pushes.append(1))
    (at_exit,) = registered
    at_exit()
    assert pushes == [1]  # the process exits without stopping the sync: one last push
    clock.stop()
    assert registered == []  # stopped: no push at exit any more

"""Values recomputed off the request path: a request reads the last result at once.

A board fit reads every vote (seconds on a store of 100,000 votes), so no request may wait for
one: :class:`Refreshing` keeps the last result of ``compute`` and, when read after its source
changed (a cheap ``version``, e.g. the store's last row id), starts a new one on a daemon thread;
the reader gets the last result without waiting. Two starts are at least ``min_interval_s`` apart,
and at least the last computation's duration divided by ``duty`` (the most of a core a value
takes while its source keeps changing): a small store's board is fresh at once, a big one's
refits take a bounded share of the CPU the votes need. Only before the first result exists does
a reader wait (``wait_s``).
:class:`RefreshingMap` does the same for a family of values keyed by their parameters (one per
leaderboard view), computing one at a time so a busy board never takes more than one core.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_NEVER = object()


class Refreshing(Generic[T]):
    """The last result of ``compute``, recomputed in the background when stale.

    Args:
        compute: builds the value (may take seconds).
        version: a cheap marker of the source; a new marker makes the value stale.
        min_interval_s: seconds (of ``clock``) between the starts of two computations.
        duty: at most this fraction of the time is spent computing (0 < duty <= 1).
        clock: time source, seconds (the caller's clock may be passed to :meth:`get` instead).
        runner: a lock held while computing; share one to run computations one at a time.
    """

    def __init__(
        self,
        compute: Callable[[], T],
        *,
        version: Callable[[], Hashable] = lambda: None,
        min_interval_s: float = 0.0,
        duty: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        runner: threading.Lock | None = None,
    ) -> None:
        if not 0.0 < duty <= 1.0:
            raise ValueError(f"duty must be in (0, 1], got {duty}")
        self._compute, self._version = compute, version
        self._min_interval_s, self._duty, self._clock = min_interval_s, duty, clock
        self._took = 0.0  # seconds the last computation took
        self._runner = runner if runner is not None else threading.Lock()
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._seen: Any = _NEVER  # the version the last computation started from
        self._started = -math.inf
        self._busy = False
        self._has = False  # a computation has succeeded
        self._done = threading.Condition(self._lock)  # notified when a computation ends

    def get(
        self, *, now: float | None = None, wait_s: float = 0.0, fresh_wait_s: float = 0.0
    ) -> T | None:
        """The last result (None before the first), starting a recomputation when stale.

        Args:
            now: the caller's time on ``clock``'s scale (default: ``clock()``).
            wait_s: before the first result exists, wait up to this long for it.
            fresh_wait_s: while a recomputation runs and the last one took at most this long,
                wait up to this long for it (a small store's board is then fresh on every read;
                a big one's reader gets the last result at once).

        Raises:
            Exception: what the first computation raised, while there is no result yet (a
                later failure keeps the last result, and its traceback is logged by the thread).
        """
        self.refresh(now=now)
        with self._done:
            if not self._has and self._busy:
                self._done.wait_for(lambda: not self._busy, timeout=wait_s)
            elif self._busy and self._took <= fresh_wait_s:
                self._done.wait_for(lambda: not self._busy, timeout=fresh_wait_s)
            if not self._has and self._error is not None:
                raise self._error
            return self._value

    def refresh(self, *, now: float | None = None) -> bool:
        """Start a computation on a daemon thread if the value is stale; True when started."""
        version = self._version()
        now = self._clock() if now is None else now
        with self._lock:
            fresh = self._seen is not _NEVER and version == self._seen
            gap = max(self._min_interval_s, self._took / self._duty)
            if self._busy or fresh or now - self._started < gap:
                return False
            self._busy, self._seen, self._started = True, version, now
        threading.Thread(target=self._run, name="apex-refresh", daemon=True).start()
        return True

    def _run(self) -> None:
        try:
            with self._runner:
                start = time.perf_counter()
                value = self._compute()
                took = time.perf_counter() - start
        except BaseException as err:
            with self._done:
                self._busy, self._error = False, err
                self._done.notify_all()
            raise  # the thread's excepthook logs it: a failing fit is a bug to see
        with self._done:
            self._busy, self._value, self._error, self._took = False, value, None, took
            self._has = True
            self._done.notify_all()


class RefreshingMap(Generic[T]):
    """A :class:`Refreshing` per key (e.g. one per leaderboard view), computed one at a time.

    Args:
        compute: ``compute(key)`` builds the value of one key.
        version, min_interval_s, duty, clock: as for :class:`Refreshing`, shared by every key.
    """

    def __init__(
        self,
        compute: Callable[[Hashable], T],
        *,
        version: Callable[[], Hashable] = lambda: None,
        min_interval_s: float = 0.0,
        duty: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute, self._version = compute, version
        self._options = {"min_interval_s": min_interval_s, "duty": duty, "clock": clock}
        self._runner = threading.Lock()
        self._lock = threading.Lock()
        self._values: dict[Hashable, Refreshing[T]] = {}

    def entry(self, key: Hashable) -> Refreshing[T]:
        """The value of ``key`` (made on first use; nothing is computed until it is read)."""
        with self._lock:
            if key not in self._values:
                self._values[key] = Refreshing(
                    lambda: self._compute(key),
                    version=self._version,
                    runner=self._runner,
                    **self._options,
                )
            return self._values[key]

    def get(self, key: Hashable, *, wait_s: float = 0.0, fresh_wait_s: float = 0.0) -> T | None:
        """The last result for ``key`` (:meth:`Refreshing.get`)."""
        return self.entry(key).get(wait_s=wait_s, fresh_wait_s=fresh_wait_s)

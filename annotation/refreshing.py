"""Values recomputed off the request path, so a request reads the last result at once; fits
that read every vote run in a niced :class:`WorkerProcess` (here they would hold the GIL the
vote handlers need)."""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from annotation.store import StoreClosed

T = TypeVar("T")

_NEVER = object()


class Refreshing(Generic[T]):
    """The last result of ``compute``, recomputed on a daemon thread when ``version()`` (a cheap
    marker of the source) changes. Two starts are at least ``min_interval_s`` of ``clock``
    apart, and at least the last computation's duration over ``duty`` (in (0, 1]; the first,
    which pays the cold start, does not count), so a big store's refits take a bounded share of
    the CPU. ``runner``: a lock held while computing; share one to compute one at a time.
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
        """The last result (None before the first), starting a recomputation when stale;
        ``now``: on ``clock``'s scale; ``wait_s``: wait up to this long for the first result;
        ``fresh_wait_s``: wait up to this long for a running recomputation if the last one took
        at most this long (a small store's board is then always fresh). Raises what the first
        computation raised while there is no result yet."""
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
            # The first computation pays the cold start (imports, a worker's spawn), which is
            # no measure of a refit: pacing starts from the second.
            self._took = took if self._has else 0.0
            self._busy, self._value, self._error = False, value, None
            self._has = True
            self._done.notify_all()


class RefreshingMap(Generic[T]):
    """A :class:`Refreshing` per key, computed one at a time by ``compute(key)``; ``options``
    (``version``, ``min_interval_s``, ``duty``, ``clock``): :class:`Refreshing`'s, every key's."""

    def __init__(self, compute: Callable[[Hashable], T], **options: Any) -> None:
        self._compute, self._options = compute, options
        self._runner = threading.Lock()
        self._lock = threading.Lock()
        self._values: dict[Hashable, Refreshing[T]] = {}

    def entry(self, key: Hashable) -> Refreshing[T]:
        """The value of ``key`` (made on first use; nothing is computed until it is read)."""
        with self._lock:
            if key not in self._values:
                self._values[key] = Refreshing(
                    lambda: self._compute(key), runner=self._runner, **self._options
                )
            return self._values[key]

    def get(self, key: Hashable, *, wait_s: float = 0.0, fresh_wait_s: float = 0.0) -> T | None:
        """The last result for ``key`` (:meth:`Refreshing.get`)."""
        return self.entry(key).get(wait_s=wait_s, fresh_wait_s=fresh_wait_s)


WORKER_NICE = 10  # niceness of a worker process: votes come first when the CPU is short
WORKER_VOTES = 5_000  # a StoreFit of a store this big runs in a worker (a small one's takes ms)


class WorkerProcess:
    """One spawned worker process of lower CPU priority (:data:`WORKER_NICE`) with its own
    store (``open_store(settings)``), for fits that read every vote; it exits with the app."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._pool: Any = None  # started on first use (:meth:`start`)
        self._lock = threading.Lock()

    def start(self) -> Any:
        """The worker's executor, started (imports done, store opened) before its first call."""
        from concurrent.futures import ProcessPoolExecutor

        with self._lock:
            if self._pool is None:
                spawn = multiprocessing.get_context("spawn")  # no fork of a threaded server
                pool = ProcessPoolExecutor(
                    1, mp_context=spawn, initializer=_init_worker, initargs=(os.getpid(),)
                )
                pool.submit(_open_store, self.settings).result()
                self._pool = pool
            return self._pool

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(store, *args, **kwargs)`` in the worker (``fn`` module-level, picklable);
        BrokenProcessPool when the worker died (e.g. out of memory): the next call starts anew."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.start().submit(_call, fn, self.settings, args, kwargs).result()
        except BrokenProcessPool:
            with self._lock:
                self._pool = None
            raise


class StoreFit:
    """The last result of ``fit(store)``, refitted on a background thread at most every
    ``refresh_s`` (of ``clock``) and only after new votes (``store.max_row_id()``). With
    ``settings``, a store of :data:`WORKER_VOTES` votes or more is fitted in a
    :class:`WorkerProcess` (``fit`` must then be module-level, picklable)."""

    def __init__(
        self,
        store: Any,
        fit: Callable[[Any], Any],
        *,
        refresh_s: float,
        settings: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._fit_store = store, fit
        self._worker = WorkerProcess(settings) if settings is not None else None
        self._fit = Refreshing(
            self._compute, version=store.max_row_id, min_interval_s=refresh_s, clock=clock
        )

    def _compute(self) -> Any:
        try:
            if self._worker is not None and self._store.max_row_id() >= WORKER_VOTES:
                return self._worker.call(self._fit_store)
            return self._fit_store(self._store)
        except StoreClosed:  # closed while this fit ran: the app is stopping, nobody reads it
            return None

    def get(self, now: float | None = None, *, wait_s: float = 0.0) -> Any:
        """The last fit (None before the first); as :meth:`Refreshing.get`."""
        return self._fit.get(now=now, wait_s=wait_s)


def _init_worker(parent_pid: int) -> None:
    """Exit with the app (even one killed or leaving without teardown); lower priority."""
    from apex.lifeline import exit_with_parent

    exit_with_parent(parent_pid)
    os.nice(WORKER_NICE)


class _NewVotesOnly:
    """The worker's store, whose :meth:`votes_frame` reads only the votes added since its last
    call (votes are never updated)."""

    #: Rows re-read before the last one seen, in case one committed late, out of row-id order
    #: (PostgreSQL sequences); SQLite commits in order.
    OVERLAP_ROWS = 1000

    def __init__(self, store: Any) -> None:
        self._store, self._frame = store, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def votes_frame(self) -> Any:
        import pandas as pd

        if self._frame is None or not len(self._frame):
            self._frame = self._store.votes_frame()
            return self._frame
        since = int(self._frame["row_id"].iloc[-1]) - self.OVERLAP_ROWS
        new = self._store.votes_frame(since_row=since)
        kept = self._frame[self._frame["row_id"] <= since]
        self._frame = pd.concat([kept, new], ignore_index=True) if len(new) else kept
        return self._frame


@functools.lru_cache(maxsize=2)
def _worker_store(settings: Any) -> Any:
    from annotation.store import open_store

    return _NewVotesOnly(open_store(settings))


def _open_store(settings: Any) -> None:
    _worker_store(settings)


def _call(fn: Callable[..., T], settings: Any, args: tuple, kwargs: dict[str, Any]) -> T:
    return fn(_worker_store(settings), *args, **kwargs)

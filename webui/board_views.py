"""Leaderboard views computed off the request path: a request reads the last result.

A board fit reads every vote (seconds on a store of 100,000 votes; the style-controlled one much
longer), so no request runs one. :class:`BoardViews` keeps each view's last result of ``fit``
(:func:`webui.leaderboard.leaderboard_data`), keyed by the options as given (one view per
combination, whatever the options are, so a new board option is cached with no change here),
and refits a view on a background thread after the store changed
(:class:`annotation.refreshing.RefreshingMap`). The fits run in one worker process of lower CPU
priority with its own store connection: in the app's process a fit would hold the GIL the vote
handlers need.
"""

from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import gradio as gr

from webui.services import NotReady, Services

#: While votes keep arriving, each view's background fits take at most this share of a core
#: (a 2 s fit at 100,000 votes is redone every 20 s; a small store's board at once).
VIEW_DUTY = 0.1
#: Niceness of the board worker process: votes come first when the CPU is short.
BOARD_WORKER_NICE = 10
#: The first request for a view waits this long for its first fit.
FIRST_VIEW_WAIT_S = 120.0
#: A request waits for a running refit that is expected within this long (small stores).
FRESH_VIEW_WAIT_S = 0.5
#: The views computed as soon as the store is up: plain, flagged included, style-controlled.
PREWARMED: tuple[dict[str, Any], ...] = (
    {},
    {"include_flagged": True},
    {"style_control": True},
)


class BoardViews:
    """Each leaderboard view's last :func:`leaderboard_data` result, refreshed off the request
    path (:class:`annotation.refreshing.RefreshingMap`, keyed by the options as given, so a new
    option is cached with no change here).

    The fits run in one worker process of lower CPU priority (its own store connection): a fit
    of 100,000 votes holds a core for seconds, and in this process it would hold the GIL the
    vote handlers need.

    Args:
        services: the app's services (the store is read in the background).
        fit: ``fit(services, board, **options)`` -> the view as JSON (a module-level function:
            it is called in the worker process), e.g. :func:`webui.leaderboard.leaderboard_data`.
        boards: the board names ``fit`` accepts.
        duty: the most of a core one view's fits take (:class:`annotation.refreshing.Refreshing`).
    """

    def __init__(
        self,
        services: Services,
        fit: Callable[..., dict[str, Any]],
        *,
        boards: Collection[str],
        duty: float = VIEW_DUTY,
    ) -> None:
        from annotation.refreshing import RefreshingMap

        self.services, self._fit_view, self._boards = services, fit, tuple(boards)
        self._worker: Any = None  # made on first use (:meth:`_pool`)
        self._worker_lock = threading.Lock()
        self._views = RefreshingMap(
            self._fit, version=lambda: services.store.max_row_id(), duty=duty
        )

    def _pool(self) -> Any:
        """The worker, started (imports, store opened) before its first fit is timed."""
        from concurrent.futures import ProcessPoolExecutor

        with self._worker_lock:
            if self._worker is None:
                spawn = multiprocessing.get_context("spawn")  # no fork of a threaded server
                worker = ProcessPoolExecutor(
                    1, mp_context=spawn, initializer=_init_worker, initargs=(os.getpid(),)
                )
                worker.submit(_open_worker_store, self.services.settings).result()
                self._worker = worker
            return self._worker

    def _fit(self, key: Any) -> dict[str, Any]:
        from concurrent.futures.process import BrokenProcessPool

        worker = self._pool()
        try:
            job = worker.submit(_fit_in_worker, self._fit_view, self.services.settings, dict(key))
            return job.result()
        except BrokenProcessPool:  # the worker died (e.g. out of memory): a new one next time
            with self._worker_lock:
                self._worker = None
            raise

    def get(self, board: str = "all", **options: Any) -> dict[str, Any]:
        """The last result of ``leaderboard_data(services, board, **options)``; waits only for a
        view's first fit (up to :data:`FIRST_VIEW_WAIT_S`), or for a refit expected within
        :data:`FRESH_VIEW_WAIT_S`.

        Raises:
            gr.Error: an unknown board, the store not ready, or a first fit still running.
        """
        if board not in self._boards:
            raise gr.Error(f"Unknown board {board!r}; choose one of {', '.join(self._boards)}.")
        try:
            self.services.store  # noqa: B018 - raises NotReady while it warms up
        except NotReady as err:
            raise gr.Error(str(err), title="Please wait", print_exception=False) from None
        key = _view_key(self._fit_view, board, options)
        data = self._views.get(key, wait_s=FIRST_VIEW_WAIT_S, fresh_wait_s=FRESH_VIEW_WAIT_S)
        if data is None:
            raise gr.Error(
                "The leaderboard is still being computed; try again in a minute.",
                title="Please wait",
                print_exception=False,
            )
        return data

    def prewarm(self) -> None:
        """Compute :data:`PREWARMED` in the background once the store is up (returns at once)."""

        def run() -> None:
            try:
                self.services.wait_for("store", self.services.settings.warmup_wait_s)
            except NotReady:  # the store failed: its own status says so
                return
            from annotation.store import StoreError

            self._pool()  # started before any fit is timed (a refit is waited for if quick)
            try:
                for options in PREWARMED:
                    self._views.entry(_view_key(self._fit_view, "all", options)).refresh()
            except StoreError:  # the app closed the store while warming up: nothing to show
                return

        threading.Thread(target=run, name="apex-board-prewarm", daemon=True).start()


@dataclass(frozen=True)
class _StoreOnly:
    """What :func:`leaderboard_data` uses of the services, in the worker process."""

    store: Any


def _init_worker(parent_pid: int) -> None:
    """Exit with the app (even one killed or leaving without teardown); lower priority."""
    from apex.lifeline import exit_with_parent

    exit_with_parent(parent_pid)
    os.nice(BOARD_WORKER_NICE)


@functools.lru_cache(maxsize=2)
def _worker_store(settings: Any) -> Any:
    from annotation.store import open_store

    return open_store(settings)


def _open_worker_store(settings: Any) -> None:
    _worker_store(settings)


def _fit_in_worker(
    fit: Callable[..., dict[str, Any]], settings: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """``fit`` in the board worker, on its own connection to the store."""
    return fit(_StoreOnly(_worker_store(settings)), **options)


def _view_key(
    fit: Callable[..., Any], board: str, options: dict[str, Any]
) -> tuple[tuple[str, Any], ...]:
    """``fit``'s options, defaults filled in, as a hashable key (one per view)."""
    bound = inspect.signature(fit).bind(None, board, **options)
    bound.apply_defaults()
    return tuple(sorted((k, v) for k, v in bound.arguments.items() if k != "services"))

"""Leaderboard views fitted off the request path (a fit reads every vote: seconds at 100,000),
in a worker process of lower priority after the store changed; a request reads the last result."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import gradio as gr

from webui.services import NotReady, Services

#: While votes keep arriving, each view's background fits take at most this share of a core
#: (a 2 s fit at 100,000 votes is redone every 20 s; a small store's board at once).
VIEW_DUTY = 0.1
#: The first request for a view waits this long for its first fit.
FIRST_VIEW_WAIT_S = 120.0
#: A request waits for a running refit that is expected within this long (small stores).
FRESH_VIEW_WAIT_S = 0.5
#: The views computed as soon as the store is up: plain, flagged included, style-controlled.
PREWARMED: tuple[dict[str, Any], ...] = ({}, {"include_flagged": True}, {"style_control": True})


class BoardViews:
    """Each leaderboard view's last :func:`annotation.board.board_data` result; ``duty``: the most
    of a core one view's fits take (:class:`annotation.refreshing.Refreshing`)."""

    def __init__(self, services: Services, *, duty: float = VIEW_DUTY) -> None:
        from annotation.refreshing import RefreshingMap, WorkerProcess

        self.services = services
        self._worker = WorkerProcess(services.settings)
        self._views = RefreshingMap(
            self._fit, version=lambda: services.store.max_row_id(), duty=duty
        )

    def _fit(self, key: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        from annotation.board import board_data

        return self._worker.call(board_data, **dict(key))

    def get(self, board: str = "all", *args: Any, **options: Any) -> dict[str, Any]:
        """The last result of ``board_data(store, board, *args, **options)``; waits only for a
        view's first fit (:data:`FIRST_VIEW_WAIT_S`), or a refit due in :data:`FRESH_VIEW_WAIT_S`.
        Raises ``gr.Error``: an unknown board, the store not ready, or a first fit still running."""
        from annotation.board import BOARD_NAMES

        if board not in BOARD_NAMES:
            raise gr.Error(f"Unknown board {board!r}; choose one of {', '.join(BOARD_NAMES)}.")
        try:
            self.services.store  # noqa: B018 - raises NotReady while it warms up
        except NotReady as err:
            raise gr.Error(str(err), title="Please wait", print_exception=False) from None
        key = _view_key(board, *args, **options)
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
                self.services.wait_for("store")
            except NotReady:  # the store failed: its own status says so
                return
            from annotation.store import StoreError

            self._worker.start()  # started before any fit is timed (a refit is waited for if quick)
            try:
                for options in PREWARMED:
                    self._views.entry(_view_key("all", **options)).refresh()
            except StoreError:  # the app closed the store while warming up: nothing to show
                return

        threading.Thread(target=run, name="apex-board-prewarm", daemon=True).start()


def _view_key(board: str, *args: Any, **options: Any) -> tuple[tuple[str, Any], ...]:
    """:func:`annotation.board.board_data`'s options, defaults filled in, as a hashable key."""
    from annotation.board import board_data

    bound = inspect.signature(board_data).bind(None, board, *args, **options)
    bound.apply_defaults()
    return tuple(sorted((k, v) for k, v in bound.arguments.items() if k != "store"))

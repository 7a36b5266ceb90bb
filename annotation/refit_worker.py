"""The app's background refits (``APEX_REFIT_HOURS=0``: none): a refit, a scorer swap on
promotion and a pool re-score. A failure in :data:`REFIT_ERRORS` is kept in
:attr:`RefitWorker.status` while the champion keeps serving; a bug is raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from annotation.refit_job import run_refit_from_store
from annotation.store.records import StoreError
from apex.audio import AudioError
from apex.checkpoints import CheckpointError
from apex.encoders.base import EncoderUnavailable
from apex.settings import Settings
from apex.training.data import DataError
from apex.training.request import RefitError
from apex.training.worker import RefitProcessError

log = logging.getLogger(__name__)

#: What a refit can meet that is not a bug: bad data, a model that does not load or changed, clips
#: that cannot be embedded, the refit process, the store or files failing. Anything else is a bug.
REFIT_ERRORS: tuple[type[Exception], ...] = (
    DataError,
    CheckpointError,
    RefitError,
    EncoderUnavailable,
    AudioError,
    RefitProcessError,
    StoreError,
    OSError,
)


@dataclass
class RefitStatus:
    """What the worker last did, for the About tab and logs."""

    runs: int = 0
    running: bool = False
    last_started: float | None = None
    last_finished: float | None = None
    last_version: str | None = None
    last_promoted: bool | None = None
    last_reasons: list[str] = field(default_factory=list)
    last_error: str | None = None
    last_figures: dict[str, dict[str, float]] = field(default_factory=dict)
    last_note: str = ""
    votes_at_last_run: int = 0
    #: Why the last refit ran: ``"votes"``, ``"schedule"`` or ``"asked"`` (trigger()).
    last_trigger: str = ""


class RefitWorker:
    """Refits every ``settings.refit_hours`` hours with new votes, or once
    ``settings.refit_min_votes`` new votes arrived (:meth:`due`); a promoted model replaces the
    ``scorer``'s and re-scores the ``arena``'s pool. ``refit``: ``(settings, store) ->
    RefitOutcome`` (default :func:`run_refit_from_store`); ``poll_s``: seconds between checks.
    """

    def __init__(
        self,
        settings: Settings,
        scorer: Any,
        store: Any,
        *,
        refit: Callable[[Settings, Any], Any] | None = None,
        arena: Any = None,
        poll_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.scorer, self.store, self.arena = settings, scorer, store, arena
        self._refit = refit or self._refit_from_store
        self.poll_s, self._clock = poll_s, clock
        self.status = RefitStatus(votes_at_last_run=self._vote_count())
        self._started_at = clock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._run_lock = threading.Lock()  # one refit at a time, even with trigger() + schedule
        self._thread: threading.Thread | None = None

    def start(self) -> RefitWorker:
        """Start the daemon thread (idempotent); returns ``self``."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="apex-refit", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds (a running refit finishes)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def trigger(self) -> None:
        """Ask for a refit now (returns at once; the thread does the work)."""
        self._wake.set()

    def _refit_from_store(self, settings: Settings, store: Any) -> Any:
        pool = self.arena.pool if self.arena is not None else None
        return run_refit_from_store(settings, store, scorer=self.scorer, pool=pool)

    def _vote_count(self) -> int:
        return int(self.store.counts().get("votes", 0))

    def next_due(self) -> dict[str, float]:
        """When the next refit is due: ``votes_left`` (new votes still needed) and ``hours_left``
        (until the schedule's hours are up; it then runs once there is a new vote)."""
        st = self.status
        new_votes = self._vote_count() - st.votes_at_last_run
        since = st.last_started if st.last_started is not None else self._started_at
        hours_left = self.settings.refit_hours - (self._clock() - since) / 3600.0
        return {
            "new_votes": float(new_votes),
            "votes_left": float(max(0, self.settings.refit_min_votes - new_votes)),
            "hours_left": max(0.0, hours_left),
        }

    def due(self) -> str:
        """Why a refit is due now: ``"votes"`` (``refit_min_votes`` new votes arrived),
        ``"schedule"`` (``refit_hours`` passed with at least one new vote), else ``""``."""
        if self.settings.refit_hours <= 0:
            return ""
        left = self.next_due()
        if left["votes_left"] <= 0:
            return "votes"
        return "schedule" if left["new_votes"] > 0 and left["hours_left"] <= 0 else ""

    def _loop(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                why = "asked" if woken else self.due()
                if why:
                    self.run_once(why)
            except Exception as err:  # top level of the worker's thread: it must not die
                # A store hiccup in due(), or a bug run_once raised: logged with its traceback,
                # shown in the status, and the loop tries again at the next poll.
                self.status.last_error = f"{type(err).__name__}: {err}"
                log.exception("refit worker: unexpected error; retrying at the next poll")

    def run_once(self, why: str = "asked") -> bool:
        """Run one refit in the calling thread; True when a new model went live. A
        :data:`REFIT_ERRORS` failure is logged and kept in :attr:`status` (the champion keeps
        serving); a bug is recorded there too, and raised."""
        if not self._run_lock.acquire(blocking=False):
            return False  # a refit is already running; this request is covered by it
        st = self.status
        try:
            st.running, st.last_started, st.last_error = True, self._clock(), None
            st.last_trigger = why
            st.votes_at_last_run = self._vote_count()
            outcome = self._refit(self.settings, self.store)
            name, decision = outcome.version.name, outcome.decision
            st.last_version, st.last_promoted = name, bool(decision.promote)
            st.last_reasons, st.last_note = list(decision.reasons), outcome.note
            st.last_figures = {
                "challenger": dict(decision.challenger or {}),
                "serving": dict(decision.champion or {}),
            }
            if outcome.note:
                log.info("refit %s: %s", name, outcome.note)
            if decision.promote and self.settings.model_pinned:
                model = self.settings.model
                log.info("refit %s promoted; the pinned APEX_MODEL=%s keeps serving", name, model)
                return False
            if decision.promote:
                from apex.checkpoints import load_model

                heads, info = load_model(outcome.version)
                self.scorer.swap(heads, info)  # atomic; raises before swapping if unfit
                log.info("refit %s promoted and serving", name)
                if self.arena is not None:  # re-score the pool; old scores stay until replaced
                    self.arena.pool.start_scoring(self.scorer, cache_dir=self.settings.cache_dir)
                return True
            log.info("refit %s not promoted: %s", name, "; ".join(st.last_reasons))
            return False
        except REFIT_ERRORS as err:  # keep serving the champion
            st.last_error = f"{type(err).__name__}: {err}"
            log.exception("refit failed; the champion keeps serving")
            return False
        except Exception as err:  # a bug: recorded for the status, then raised
            st.last_error = f"{type(err).__name__} (a bug): {err}"
            raise
        finally:
            st.runs += 1
            st.running, st.last_finished = False, self._clock()
            self._run_lock.release()

    def info(self) -> dict[str, Any]:
        """JSON-ready status (for the About tab)."""
        return dict(self.status.__dict__)

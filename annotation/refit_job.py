"""The refit job: read the vote store, hand votes to :mod:`apex.training.refit`, swap on promotion.

:func:`run_refit_from_store` is one synchronous refit (the CLI and tests call it);
:class:`RefitWorker` runs it in a background thread of the app: every ``settings.refit_hours``
hours, or sooner once ``settings.refit_min_votes`` new votes have arrived. It never blocks a
request (training happens on its own thread; the only shared step is :meth:`Scorer.swap`, a
reference assignment under the scorer's swap lock) and it leaves the champion serving when
anything fails: the scorer is swapped only after the gate promoted and the new model loaded.

Votes leave this module as a DataFrame (``apex`` never reads the store). Human 1-5 ratings given
with votes (``ratings_a`` / ``ratings_b``) become a ``clip_id`` + aesthetics table that joins the
engagement targets.

Engagement data: ``<data_dir>/engagement`` (Parquet shards, see :mod:`apex.training.data`); with
the demo pool and no such folder, the demo corpus embedded with the fallback encoder. Arena clips
must have rows in those shards (split ``pool`` when they have no engagement targets) for their
votes to count: votes on clips without embeddings are skipped by the refit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from apex.settings import Settings

log = logging.getLogger(__name__)


def ratings_frame(votes: pd.DataFrame) -> pd.DataFrame:
    """Long table ``clip_id`` + aesthetic columns from the votes' ``ratings_a`` / ``ratings_b``."""
    rows: list[dict[str, Any]] = []
    for side in ("a", "b"):
        col = f"ratings_{side}"
        if col not in votes:
            continue
        for clip, ratings in zip(votes[f"clip_{side}"], votes[col], strict=True):
            if isinstance(ratings, dict) and ratings:
                rows.append({"clip_id": clip, **{k: float(v) for k, v in ratings.items()}})
    return pd.DataFrame(rows)


def engagement_source(settings: Settings) -> Path:
    """Where the refit's engagement shards are (building the demo ones when that is the pool)."""
    folder = settings.data_dir / "engagement"
    if folder.is_dir() and any(folder.rglob("*.parquet")):
        return folder
    if settings.pool == "demo":
        from apex.training.demo import demo_engagement

        return demo_engagement(settings)
    raise FileNotFoundError(
        f"no engagement shards under {folder}; write them with apex.training.write_shard "
        "(the arena's clips included, split 'pool') before refitting"
    )


def run_refit_from_store(
    settings: Settings,
    store: Any,
    *,
    config: Any = None,
    engagement: Path | None = None,
):
    """One refit from the vote store's current votes; returns the :class:`RefitOutcome`."""
    from apex.training.data import load_engagement
    from apex.training.refit import ModelRegistry, RefitConfig, run_refit

    votes = store.votes_frame()
    if len(votes) == 0:
        raise ValueError("the vote store holds no votes yet; nothing to refit on")
    config = config or RefitConfig()
    config = replace(config, model_repo=config.model_repo or settings.model_repo)
    data, transform = load_engagement(
        engagement or engagement_source(settings),
        mode=config.train.mode,
        ratings=ratings_frame(votes),
    )
    registry = ModelRegistry(settings.models_dir / "refits")
    return run_refit(data, transform, votes, registry, config)


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
    votes_at_last_run: int = 0


class RefitWorker:
    """Background refits for the app; see the module docstring.

    Args:
        settings: ``refit_hours`` (0 = no schedule), ``refit_min_votes``, data directories.
        scorer: the serving :class:`apex.scorer.Scorer`; swapped on promotion.
        store: the vote store (``votes_frame()``, ``counts()``).
        refit: the refit to run, ``(settings, store) -> RefitOutcome`` (default
            :func:`run_refit_from_store`); tests and alternative pipelines replace it.
        poll_s: how often the thread checks whether a refit is due, seconds.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        settings: Settings,
        scorer: Any,
        store: Any,
        *,
        refit: Callable[[Settings, Any], Any] | None = None,
        poll_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.scorer, self.store = settings, scorer, store
        self._refit = refit or run_refit_from_store
        self.poll_s, self._clock = poll_s, clock
        self.status = RefitStatus(votes_at_last_run=self._vote_count())
        self._started_at = clock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._run_lock = threading.Lock()  # one refit at a time, even with trigger() + schedule
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
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

    # ------------------------------------------------------------------ scheduling
    def _vote_count(self) -> int:
        try:
            return int(self.store.counts().get("votes", 0))
        except Exception:  # a store hiccup must not kill the app's worker; try again later
            log.exception("refit worker: cannot count votes")
            return self.status.votes_at_last_run if hasattr(self, "status") else 0

    def due(self) -> bool:
        """True when the schedule's hours have passed or enough new votes arrived."""
        new_votes = self._vote_count() - self.status.votes_at_last_run
        if new_votes >= self.settings.refit_min_votes:
            return True
        hours = self.settings.refit_hours
        if hours <= 0:
            return False
        since = (
            self.status.last_started if self.status.last_started is not None else self._started_at
        )
        return new_votes > 0 and self._clock() - since >= hours * 3600.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            if woken or self.due():
                self.run_once()

    # ------------------------------------------------------------------ one run
    def run_once(self) -> bool:
        """Run one refit now (in the calling thread); True when a new model went live.

        Never raises: a failure is logged and kept in :attr:`status`, and the champion (the
        scorer's current heads) keeps serving.
        """
        if not self._run_lock.acquire(blocking=False):
            return False  # a refit is already running; this request is covered by it
        st = self.status
        try:
            st.running, st.last_started, st.last_error = True, self._clock(), None
            st.votes_at_last_run = self._vote_count()
            outcome = self._refit(self.settings, self.store)
            st.last_version = outcome.version.name
            st.last_promoted = bool(outcome.decision.promote)
            st.last_reasons = list(outcome.decision.reasons)
            if outcome.decision.promote and self.settings.model_pinned:
                log.info(
                    "refit %s promoted in the registry; APEX_MODEL=%s is pinned, so it keeps "
                    "serving",
                    outcome.version.name,
                    self.settings.model,
                )
                return False
            if outcome.decision.promote:
                from apex.checkpoints import load_model

                heads, info = load_model(outcome.version)
                self.scorer.swap(heads, info)  # atomic; raises before swapping if unfit
                log.info("refit %s promoted and serving", outcome.version.name)
                return True
            log.info("refit %s not promoted: %s", outcome.version.name, "; ".join(st.last_reasons))
            return False
        except Exception as err:  # keep serving the champion whatever went wrong
            st.last_error = f"{type(err).__name__}: {err}"
            log.exception("refit failed; the champion keeps serving")
            return False
        finally:
            st.runs += 1
            st.running, st.last_finished = False, self._clock()
            self._run_lock.release()

    def info(self) -> dict[str, Any]:
        """JSON-ready status (for the About tab)."""
        return dict(self.status.__dict__)

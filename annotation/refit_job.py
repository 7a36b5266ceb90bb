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
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from apex.settings import Settings, split_list

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


def engagement_source(settings: Settings) -> tuple[Path, str]:
    """Where the refit's engagement shards are, and a note for people ("" when none is due).

    ``APEX_ENGAGEMENT``: ``auto`` -> ``<data_dir>/engagement`` when it holds shards, else the
    demo corpus's (built once); a local folder or file of shards; a Hub dataset id (``owner/name``)
    -> its Parquet files, downloaded once into ``cache_dir/engagement-hub`` (later calls read
    the cache without a request); offline the demo's, and the note says so.

    Raises:
        FileNotFoundError: a local path that does not exist or holds no Parquet shard.
    """
    spec = settings.engagement
    if spec == "auto":
        folder = settings.data_dir / "engagement"
        if folder.is_dir() and any(folder.rglob("*.parquet")):
            return folder, ""
        return _demo_engagement(settings), (
            f"no engagement shards under {folder}: refits use the demo corpus's engagement data"
        )
    path = Path(spec).expanduser()
    if path.exists() or spec.count("/") != 1 or spec.startswith((".", "/", "~")):
        if not path.exists() or not (path.is_file() or any(path.rglob("*.parquet"))):
            raise FileNotFoundError(
                f"APEX_ENGAGEMENT={spec!r}: no Parquet shards there; point it at a folder of "
                "shards written with apex.training.write_shard, or a Hub dataset id"
            )
        return path, ""
    try:
        return _hub_engagement(spec, settings.cache_dir / "engagement-hub"), ""
    except (OSError, ValueError) as err:  # offline, unknown or gated repo (HTTP errors: OSError)
        return _demo_engagement(settings), (
            f"engagement dataset {spec!r} could not be downloaded ({type(err).__name__}: {err}); "
            "refits use the demo corpus's engagement data until it can be"
        )


def _demo_engagement(settings: Settings) -> Path:
    from apex.demo.evidence import demo_engagement

    return demo_engagement(settings)


def _hub_engagement(repo_id: str, cache: Path) -> Path:
    """The dataset's Parquet files: from the local cache when there, else downloaded once."""
    from huggingface_hub import snapshot_download

    kwargs = {"repo_id": repo_id, "repo_type": "dataset", "cache_dir": str(cache)}
    kwargs["allow_patterns"] = ["*.parquet", "**/*.parquet"]
    try:
        folder = snapshot_download(**kwargs, local_files_only=True)
    except (OSError, ValueError):  # not cached yet: one download
        folder = snapshot_download(**kwargs)
    path = Path(folder)
    if not any(path.rglob("*.parquet")):
        raise ValueError(f"dataset {repo_id} holds no Parquet shards")
    return path


def refit_votes(settings: Settings, votes: pd.DataFrame) -> pd.DataFrame:
    """The votes that train a refit: those whose ``source`` is in ``APEX_REFIT_SOURCES``."""
    sources = split_list(settings.refit_sources)
    if "source" not in votes.columns:
        return votes
    return votes[votes["source"].isin(sources)].reset_index(drop=True)


def write_pool_rows(pool: Any, scorer: Any, path: Path) -> Path | None:
    """Every pool clip's pooled embedding as a split-``pool`` shard row at ``path``.

    The embedding is the one the scorer computed when it scored the clip: the encoder's
    embedding cache is keyed by the audio's content hash, so this reads it back (a clip never
    scored is encoded now). Rows keep only segments with audio: ``[S, L, D]``.
    """
    from apex.training.data import write_shard

    encoder = getattr(scorer, "encoder", None)
    if pool is None or encoder is None:
        return None
    rows = []
    for clip in pool:
        emb = scorer.embed(clip.path)
        rows.append(
            {
                "id": clip.clip_id,
                "embedding": emb.layers[emb.mask].numpy(),
                "duration_s": clip.duration_s,
                "encoder_id": emb.encoder_id,
                "platform": "arena",
                "split": "pool",
            }
        )
    if not rows:
        return None
    tmp = path.with_name(f".{path.name}.tmp")
    write_shard(pd.DataFrame(rows), tmp)
    os.replace(tmp, path)
    return path


def run_refit_from_store(
    settings: Settings,
    store: Any,
    *,
    scorer: Any = None,
    pool: Any = None,
    train: dict[str, Any] | None = None,
    in_process: bool = False,
):
    """One real refit from the vote store's current votes; returns the :class:`RefitOutcome`.

    Votes are filtered by ``APEX_REFIT_SOURCES``; engagement data comes from
    :func:`engagement_source`, plus the pool's clips as split-``pool`` rows when a ``pool`` and the
    ``scorer`` are given; the gate compares with the model the ``scorer`` serves (default: the
    registry's champion). The training runs in its own low-priority process
    (:mod:`apex.training.worker`) unless ``in_process``.

    Args:
        train: overrides of the data-scaled training configuration (``epochs``, ``lr``, ...),
            on top of the ``APEX_REFIT_*`` settings.
    """
    from apex.training.gate import Decision
    from apex.training.refit import RefitOutcome
    from apex.training.registry import registry_for
    from apex.training.worker import execute, run_in_subprocess

    votes = refit_votes(settings, store.votes_frame())
    if len(votes) == 0:
        raise ValueError(
            f"the vote store holds no votes from sources {settings.refit_sources!r} yet; "
            "nothing to refit on (APEX_REFIT_SOURCES chooses which sources train)"
        )
    source, note = engagement_source(settings)
    if note:
        log.info("refit: %s", note)
    work = settings.data_dir / "refit-work"
    work.mkdir(parents=True, exist_ok=True)
    votes_path = work / "votes.parquet"
    cols = ["battle_uuid", "clip_a", "clip_b", "preference", "timestamp", "is_instrumental"]
    votes[[c for c in cols if c in votes]].to_parquet(votes_path)
    ratings = ratings_frame(votes)
    ratings_path = None
    if len(ratings):
        ratings_path = work / "ratings.parquet"
        ratings.to_parquet(ratings_path)
    serving = _serving_path(scorer)
    request = {
        "engagement": str(source),
        "pool": str(p) if (p := write_pool_rows(pool, scorer, work / "pool.parquet")) else None,
        "votes": str(votes_path),
        "ratings": str(ratings_path) if ratings_path else None,
        "registry": str(registry_for(settings).root),
        "serving": serving,
        "threads": settings.refit_threads,
        "nice": settings.refit_nice,
        "holdout": settings.refit_holdout,
        "train": {**_train_overrides(settings), **(train or {})},
        "kind": "demo"
        if source.is_relative_to(settings.data_dir / "engagement-demo")
        else "custom",
        "model_repo": settings.model_repo,
    }
    out = execute(request) if in_process else run_in_subprocess(request, work)
    decision = Decision(out["promote"], out["reasons"], out["challenger"], out["serving"])
    return RefitOutcome(Path(out["version"]), decision, out["reports"], out["push"], note)


def _train_overrides(settings: Settings) -> dict[str, Any]:
    values = {
        "epochs": settings.refit_epochs,
        "batch_size": settings.refit_batch_size,
        "lr": settings.refit_lr,
        "patience": settings.refit_patience,
    }
    return {k: v for k, v in values.items() if v}


def _serving_path(scorer: Any) -> str | None:
    """Where the scorer's current model was loaded from (None for an in-memory model)."""
    if scorer is None:
        return None
    source = scorer.info().get("source") or ""
    return source if source and Path(source).exists() else None


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


class RefitWorker:
    """Background refits for the app; see the module docstring.

    Args:
        settings: ``refit_hours`` (0 = no schedule), ``refit_min_votes``, data directories.
        scorer: the serving :class:`apex.scorer.Scorer`; swapped on promotion.
        store: the vote store (``votes_frame()``, ``counts()``).
        refit: the refit to run, ``(settings, store) -> RefitOutcome`` (default
            :func:`run_refit_from_store` against the serving scorer, with the arena's pool as
            split-``pool`` rows, in its own low-priority process).
        arena: the :class:`annotation.arena.Arena` whose pool is re-scored in the background by
            a newly swapped-in model (None: no pool to refresh).
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
        self.rescoring: threading.Thread | None = None

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

    def _refit_from_store(self, settings: Settings, store: Any) -> Any:
        pool = self.arena.pool if self.arena is not None else None
        return run_refit_from_store(settings, store, scorer=self.scorer, pool=pool)

    def _after_swap(self) -> None:
        """Re-score the arena's pool with the new model on a background thread."""
        if self.arena is None:
            return
        self.rescoring = threading.Thread(
            target=self._rescore, name="apex-pool-rescore", daemon=True
        )
        self.rescoring.start()

    def _rescore(self) -> None:
        try:
            # the pool's scoring queue switches to the new model (old scores stay until replaced)
            self.arena.pool.start_scoring(self.scorer, cache_dir=self.settings.cache_dir)
            log.info("pool re-scored by %s", self.arena.pool.model_version)
        except Exception:  # the old predictions stay, labelled with their own version
            log.exception("re-scoring the pool with the new model failed")

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
            st.last_figures = {
                "challenger": dict(outcome.decision.challenger or {}),
                "serving": dict(outcome.decision.champion or {}),
            }
            st.last_note = getattr(outcome, "note", "")
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
                self._after_swap()
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

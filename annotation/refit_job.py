"""The refit job: read the vote store and hand its votes to :mod:`apex.training.refit`.

:func:`run_refit_from_store` is one synchronous refit (the CLI, the tests and the app's
background worker, :class:`annotation.refit_worker.RefitWorker`, call it). It leaves the
champion serving whatever happens: the decision to swap is the worker's, after the gate promoted.

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
from pathlib import Path
from typing import Any

import pandas as pd

from apex.files import atomic_path
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
    with atomic_path(path) as tmp:
        write_shard(pd.DataFrame(rows), tmp)
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

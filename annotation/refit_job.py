"""The refit job: read the vote store and hand a typed refit request to :mod:`apex.training`
(embedding, training and the gate run in the refit's own low-priority process; the serving
model serves throughout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from apex.hub_files import is_repo_id
from apex.settings import Settings, split_list
from apex.training.request import EncoderSpec, PoolClip, RefitOutcome, ServingModel


def ratings_frame(votes: pd.DataFrame) -> pd.DataFrame:
    """Long table ``clip_id`` + aesthetic columns from the votes' ``ratings_a`` / ``ratings_b``."""
    sides = [(f"clip_{s}", f"ratings_{s}") for s in ("a", "b") if f"ratings_{s}" in votes]
    return pd.DataFrame(
        {"clip_id": clip, **{k: float(v) for k, v in ratings.items()}}
        for clip_col, ratings_col in sides
        for clip, ratings in zip(votes[clip_col], votes[ratings_col], strict=True)
        if isinstance(ratings, dict) and ratings
    )


def engagement_path(settings: Settings, encoder_id: str | None = None) -> tuple[Path | None, str]:
    """Where the refit's engagement shards are (None: none), and a note for people.

    ``APEX_ENGAGEMENT``: ``auto`` -> ``<data_dir>/engagement`` when it holds shards, else the
    demo corpus's when the serving model reads the demo's encoder (``fallback``), else none; a
    local folder or file of shards (FileNotFoundError when it holds none); a Hub dataset id ->
    its Parquet files, downloaded once into ``cache_dir/engagement-hub`` (then read from there);
    none when it cannot be had (offline, unknown repo), and the note says why.
    """
    spec = settings.engagement
    if spec == "auto":
        folder = settings.data_dir / "engagement"
        if folder.is_dir() and any(folder.rglob("*.parquet")):
            return folder, ""
        if encoder_id in (None, "fallback"):
            from apex.demo.model import demo_engagement

            return demo_engagement(settings), (
                f"no engagement shards under {folder}: refits use the demo corpus's engagement data"
            )
        return None, f"no engagement shards under {folder} (APEX_ENGAGEMENT=auto)"
    if not is_repo_id(spec):
        path = Path(spec).expanduser()
        if not path.exists() or not (path.is_file() or any(path.rglob("*.parquet"))):
            raise FileNotFoundError(
                f"APEX_ENGAGEMENT={spec!r}: no Parquet shards there; point it at a folder of "
                "shards written by `apex embed` (or apex.training.data.write_shard), or a Hub "
                "dataset id"
            )
        return path, ""
    try:
        return _hub_engagement(spec, settings.cache_dir / "engagement-hub"), ""
    except (OSError, ValueError) as err:  # offline, unknown or gated repo (HTTP errors: OSError)
        return None, (
            f"engagement dataset {spec!r} is not in the cache and could not be downloaded "
            f"({type(err).__name__}: {err}); this refit has no engagement data. Download it "
            "once while online (it is then read from the cache)"
        )


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


def run_refit_from_store(
    settings: Settings,
    store: Any,
    *,
    scorer: Any = None,
    pool: Any = None,
    train: dict[str, Any] | None = None,
    warm_start: bool = True,
    in_process: bool = False,
) -> RefitOutcome:
    """One refit from the votes of ``APEX_REFIT_SOURCES`` and their 1-5 ratings.

    The gate compares with the model the ``scorer`` serves (default: the registry's champion;
    an in-memory model, with no ``heads_from``, cannot be handed over); the ``pool``'s clips are
    embedded by the scorer's encoder (its cache first). The refit runs in its own low-priority
    process (:mod:`apex.training.worker`) unless ``in_process``. ``train``: overrides (``epochs``,
    ``lr``, ...) on top of ``APEX_REFIT_*``; ``warm_start=False``: a challenger from random
    weights. Raises DataError without votes from the refit's sources, RefitProcessError when the
    refit process fails, and what :func:`apex.training.worker.execute` raises.
    """
    from annotation.board import select_votes
    from apex.training.data import DataError
    from apex.training.registry import registry_for
    from apex.training.request import RefitRequest
    from apex.training.worker import execute, run_in_subprocess

    sources = split_list(settings.refit_sources)
    votes = select_votes(store.votes_frame(), sources=sources, include_flagged=True)
    votes = votes.reset_index(drop=True)
    if len(votes) == 0:
        raise DataError(
            f"the vote store holds no votes from sources {settings.refit_sources!r} yet; "
            "nothing to refit on (APEX_REFIT_SOURCES chooses which sources train)"
        )
    info = scorer.info() if scorer is not None else {}
    model_from = str(info.get("heads_from") or "")  # a Hub repo id, a model directory or a .pt
    version = str(info.get("version", ""))
    serving = ServingModel(model_from, info.get("revision"), version) if model_from else None
    engagement, note = engagement_path(settings, info.get("trained_encoder_id"))
    work = settings.data_dir / "refit-work"
    work.mkdir(parents=True, exist_ok=True)
    cols = ["battle_uuid", "clip_a", "clip_b", "preference", "timestamp", "is_instrumental"]
    votes[[c for c in cols if c in votes]].to_parquet(work / "votes.parquet")
    ratings = ratings_frame(votes)
    if len(ratings):
        ratings.to_parquet(work / "ratings.parquet")
    demo_dir = settings.data_dir / "engagement-demo"
    demo = engagement is not None and engagement.is_relative_to(demo_dir)
    overrides = {  # 0: sized to the data
        "epochs": settings.refit_epochs,
        "batch_size": settings.refit_batch_size,
        "lr": settings.refit_lr,
        "patience": settings.refit_patience,
    }
    request = RefitRequest(
        votes=str(work / "votes.parquet"),
        registry=str(registry_for(settings).root),
        engagement=str(engagement) if engagement is not None else None,
        ratings=str(work / "ratings.parquet") if len(ratings) else None,
        serving=serving,
        encoder=encoder_spec(settings, scorer),
        clips=[PoolClip(c.clip_id, str(c.path), float(c.duration_s)) for c in (pool or [])],
        threads=settings.refit_threads,
        nice=settings.refit_nice,
        holdout=settings.refit_holdout,
        train={**{k: v for k, v in overrides.items() if v}, **(train or {})},
        warm_start=warm_start,
        kind="demo" if demo else "custom",
        model_repo=settings.model_repo,
        notes=[note] if note else [],
    )
    return execute(request) if in_process else run_in_subprocess(request, work)


def encoder_spec(settings: Settings, scorer: Any) -> EncoderSpec | None:
    """How the refit process embeds arena clips like the scorer: its embedding-cache address
    and, for a miss, how to load the same encoder."""
    encoder = getattr(scorer, "encoder", None)
    if encoder is None:
        return None
    info = scorer.info()
    spec = settings.encoder if settings.encoder not in ("auto", "") else info["trained_encoder_id"]
    return EncoderSpec(
        spec="fallback" if getattr(encoder, "is_fallback", False) else str(spec),
        encoder_id=encoder.encoder_id,
        settings_key=encoder.settings_key(),
        cache_dir=str(settings.cache_dir / "embeddings"),
        sample_rate=int(encoder.sample_rate),
        precision=settings.precision,
        trust_remote_code=settings.trust_remote_code,
        max_audio_s=float(settings.max_audio_s),
    )

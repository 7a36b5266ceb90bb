"""The offline demo model: :class:`~apex.heads.ApexHeads` on the fallback encoder fitted on the
demo corpus, for when no MERT weights or published heads can be had (and it says so). Built on
first use under ``settings.models_dir``."""

from __future__ import annotations

import shutil
from pathlib import Path

from apex.checkpoints import CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME
from apex.demo.corpus import DEMO_VERSION, PLATFORM, build_lock, ensure_demo_corpus, load_metadata
from apex.files import atomic_dir, sha256_text
from apex.settings import Settings
from apex.tasks import ENGAGEMENT

DEMO_MODEL_VERSION = "3"
#: Simulated votes per clip for the demo heads' preference loss (and their held-out check).
VOTES_PER_CLIP = 8


def demo_engagement(settings: Settings) -> Path:
    """The engagement shard of the demo corpus embedded by the fallback encoder (built once)."""
    from apex.audio import load_audio
    from apex.encoders import CachedEncoder, EmbeddingCache, FallbackEncoder
    from apex.training.data import write_shard

    corpus = ensure_demo_corpus(settings)
    out = settings.data_dir / "engagement-demo" / f"v{DEMO_VERSION}-s{settings.demo_seed}"
    shard = out / f"n{settings.demo_clips}.parquet"
    if shard.is_file():
        return shard
    meta = load_metadata(corpus)
    encoder = CachedEncoder(FallbackEncoder(), EmbeddingCache(settings.cache_dir / "embeddings"))
    embeddings = []
    for name in meta["file_name"]:
        emb = encoder.encode(load_audio(corpus / name, sample_rate=encoder.sample_rate))
        embeddings.append(emb.layers[emb.mask].numpy())  # [S, 1, D], valid segments only
    frame = meta.rename(columns={"clip_id": "id"}).assign(
        embedding=embeddings, encoder_id=encoder.encoder_id, platform=PLATFORM
    )
    return write_shard(frame, shard)  # atomic: a killed build leaves no half shard


def _complete(directory: Path) -> bool:
    return all((directory / n).is_file() for n in (CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME))


def ensure_demo_model(settings: Settings) -> Path:
    """The demo model's directory (named by a hash of all that changes the model), built on first
    use (the corpus too, if needed) under a file lock and published by an atomic rename."""
    from apex.encoders import FallbackEncoder

    key = (
        f"{DEMO_MODEL_VERSION}|corpus{DEMO_VERSION}|seed{settings.demo_seed}"
        f"|n{settings.demo_clips}|votes{VOTES_PER_CLIP}|{FallbackEncoder().settings_key()}"
    )
    target = settings.models_dir / f"demo-{DEMO_MODEL_VERSION}-{sha256_text(key)[:10]}"
    if _complete(target):
        return target
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with build_lock(settings.models_dir / f".{target.name}.lock"):
        if _complete(target):  # another caller finished while we waited
            return target
        shutil.rmtree(target, ignore_errors=True)  # leftovers of an interrupted build
        with atomic_dir(target) as staging:
            build_demo_model(settings, staging, version=target.name.removeprefix("demo-"))
    return target


def build_demo_model(settings: Settings, directory: Path, *, version: str) -> Path:
    """Fit the demo heads (:func:`apex.training.config.scaled_train_config`, a preference loss on
    simulated votes between ``train`` clips, early stopping on ``val``) and save them to
    ``directory``; the held-out figures on ``test`` clips are the model's ``metrics``."""
    from apex.demo.listeners import simulate_votes
    from apex.encoders import FallbackEncoder
    from apex.evaluation.metrics import evaluate_model
    from apex.training.battles import battles_from_votes
    from apex.training.config import scaled_train_config
    from apex.training.data import load_engagement
    from apex.training.loop import predict
    from apex.training.refit import train_with_votes
    from apex.training.saving import model_metadata, save_trained

    data, transform = load_engagement(demo_engagement(settings))
    meta = load_metadata(ensure_demo_corpus(settings))
    index = data.index_of()

    def votes_within(split: str, seed: int):
        clips = meta[meta["split"] == split]
        return battles_from_votes(
            simulate_votes(clips, VOTES_PER_CLIP * len(clips), seed=seed), index
        )

    config = scaled_train_config(
        len(data.songs_in("train")), pref_weight=1.0, seed=settings.demo_seed, device="cpu"
    )
    result = train_with_votes(data, config, votes_within("train", settings.demo_seed))
    held = votes_within("test", settings.demo_seed + 1)
    metrics = evaluate_model(result.model, data, battles=held, use_preference=True)
    outputs = predict(result.model, data.song_x)
    metadata = model_metadata(
        result,
        data,
        transform,
        model_id="apex-arena-demo",
        version=version,
        kind="demo",
        encoder_spec="fallback",
        encoder_settings=FallbackEncoder().settings_key(),
        metrics=metrics,
        description="Demo heads fitted on the synthetic demo corpus; not the published APEX.",
    )
    # Percentiles of a demo score: against the model's own outputs on the corpus.
    metadata["reference_distribution"] = {n: sorted(map(float, outputs[n])) for n in ENGAGEMENT}
    return save_trained(result, directory, metadata)

"""The offline demo model: :class:`~apex.heads.ApexHeads` fitted on the synthetic demo corpus.

When no MERT weights or published heads can be had, the product still answers with these heads on
the built-in fallback encoder, and says so. They are fitted on first use by the same training stack
as every refit (:mod:`apex.training`; there is one training loop):

- inputs: the demo corpus's engagement shards (:func:`apex.demo.evidence.demo_engagement`: the
  fallback encoder's descriptors, ``L = 1``), averaged over each clip's segments;
- targets: the corpus's raw streams/likes (percentile-power transform) and five aesthetics;
- preference: a Bradley-Terry loss on simulated votes between training clips;
- hyperparameters sized to the data (:func:`apex.training.config.scaled_train_config`), early
  stopping on the ``val`` split.

The result lives in ``settings.models_dir / "demo-<version>"``; the version hashes everything that
changes the fit (this module's version, the corpus version, seed and size, the fallback descriptor
settings), so a change rebuilds it. Builds are serialised by a file lock and published by an atomic
directory rename: concurrent callers (threads or processes) get one complete model.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from apex.checkpoints import CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME
from apex.files import atomic_dir, sha256_text
from apex.settings import Settings
from apex.tasks import ENGAGEMENT

DEMO_MODEL_VERSION = "3"
#: Simulated votes per clip for the demo heads' preference loss (and their held-out check).
VOTES_PER_CLIP = 8


def demo_model_dir(settings: Settings) -> Path:
    """Where the demo model of ``settings`` lives (whether built yet or not)."""
    from apex.demo import DEMO_VERSION
    from apex.encoders import FallbackEncoder

    key = "|".join(
        (
            DEMO_MODEL_VERSION,
            f"corpus{DEMO_VERSION}",
            f"seed{settings.demo_seed}",
            f"n{settings.demo_clips}",
            f"votes{VOTES_PER_CLIP}",
            FallbackEncoder().settings_key(),
        )
    )
    digest = sha256_text(key)[:10]
    return settings.models_dir / f"demo-{DEMO_MODEL_VERSION}-{digest}"


def _complete(directory: Path) -> bool:
    return all((directory / n).is_file() for n in (CONFIG_NAME, WEIGHTS_NAME, METADATA_NAME))


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (``flock``) and threads (separate open files)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone still keeps the result whole
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_demo_model(settings: Settings) -> Path:
    """Return the demo model directory, building it on first use (builds the corpus if needed)."""
    target = demo_model_dir(settings)
    if _complete(target):
        return target
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(settings.models_dir / f".{target.name}.lock"):
        if _complete(target):  # another caller finished while we waited
            return target
        shutil.rmtree(target, ignore_errors=True)  # leftovers of an interrupted build
        with atomic_dir(target) as staging:
            build_demo_model(settings, staging, version=target.name.removeprefix("demo-"))
    return target


def build_demo_model(settings: Settings, directory: Path, *, version: str) -> Path:
    """Fit the demo heads on the demo corpus of ``settings`` with :mod:`apex.training` and save
    them to ``directory``.

    The one training loop of the project (:func:`apex.training.refit.train_with_votes`) with the
    data-scaled configuration of :func:`apex.training.config.scaled_train_config`, a preference
    loss on simulated votes between ``train`` clips, early stopping on the ``val`` split; the
    held-out figures (Spearman on ``test`` clips, pairwise accuracy on simulated votes between
    ``test`` clips) are stored as the model's ``metrics``.
    """
    from apex.demo import ensure_demo_corpus, load_metadata, simulate_votes
    from apex.demo.evidence import demo_engagement
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
    encoder = FallbackEncoder()
    metadata = model_metadata(
        result,
        data,
        transform,
        model_id="apex-arena-demo",
        version=version,
        kind="demo",
        encoder_spec="fallback",
        encoder_settings=encoder.settings_key(),
        metrics=metrics,
        description="Demo heads fitted on the synthetic demo corpus; not the published APEX.",
    )
    # Percentiles of a demo score: against the model's own outputs on the corpus.
    metadata["reference_distribution"] = {n: sorted(map(float, outputs[n])) for n in ENGAGEMENT}
    return save_trained(result, directory, metadata)

"""A refit in its own process, at low priority with capped threads, so it cannot starve visitors:
``python -m apex.training.worker REQUEST.json OUTCOME.json`` (:func:`run_in_subprocess`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from apex.files import write_text_atomic
from apex.lifeline import exit_with_parent
from apex.training.request import EncoderSpec, PoolClip, RefitOutcome, RefitRequest

log = logging.getLogger(__name__)


class RefitProcessError(RuntimeError):
    """The refit process failed; the message carries its exit code and last stderr lines."""


def execute(request: RefitRequest) -> RefitOutcome:
    """Run ``request`` here, in the serving model's encoder space (other encoders' engagement rows
    are left out, with a note). Raises DataError (nothing to train on), CheckpointError or
    RefitError (the serving model does not load, or changed under the app), EncoderUnavailable or
    AudioError (clips cannot be embedded)."""
    import torch

    from apex.training.config import scaled_train_config
    from apex.training.data import assemble, read_shards
    from apex.training.refit import RefitConfig, load_champion, run_refit
    from apex.training.registry import ModelRegistry

    torch.set_num_threads(request.threads)
    registry = ModelRegistry(request.registry)
    serving = request.serving.load() if request.serving else load_champion(registry)
    notes = list(request.notes)
    votes = pd.read_parquet(request.votes)
    engagement = read_shards(request.engagement) if request.engagement else None
    pool = None
    if request.encoder is not None:
        named = set(votes["clip_a"].astype(str)) | set(votes["clip_b"].astype(str))
        padded = bool(getattr(serving[0], "uses_padded_pooling", False)) if serving else False
        clips = [c for c in request.clips if c.clip_id in named]
        pool = clip_rows(clips, request.encoder, padded=padded)
    space = serving[1].encoder_id if serving else None
    space = space or (request.encoder.encoder_id if request.encoder else None)
    if engagement is not None and space is not None:
        other = engagement["encoder_id"] != space
        if other.any():
            encoders = ", ".join(sorted(set(engagement.loc[other, "encoder_id"])))
            notes.append(
                f"{int(other.sum())} engagement rows embedded by {encoders} were left out: the "
                f"serving model reads {space} embeddings, and encoders are never mixed"
            )
            engagement = engagement[~other].reset_index(drop=True)
    ratings = pd.read_parquet(request.ratings) if request.ratings else None
    data, transform = assemble(engagement, pool, ratings=ratings)
    train = {"pref_weight": 1.0, "device": "cpu", "progress": False, **request.train}
    config = RefitConfig(
        train=scaled_train_config(len(data.songs_in("train")), **train),
        holdout_fraction=request.holdout,
        model_repo=request.model_repo,
        kind=request.kind,
        warm_start=request.warm_start,
    )
    outcome = run_refit(data, transform, votes, registry, config, serving=serving, notes=notes)
    outcome.pool_rows = len(pool) if pool is not None else 0
    return outcome


def clip_rows(clips: Iterable[PoolClip], spec: EncoderSpec, *, padded: bool) -> pd.DataFrame:
    """One split-``pool`` row per clip; a clip not in the app's embedding cache is encoded on the
    CPU and cached for the app too. Raises EncoderUnavailable (that encoder cannot be loaded) or
    AudioError (a clip's file is not usable audio; the message names it)."""
    from apex.audio import load_audio
    from apex.encoders import load_encoder
    from apex.encoders.cache import EmbeddingCache

    cache = EmbeddingCache(spec.cache_dir)
    encoder = None
    rows, encoded = [], 0
    for clip in clips:
        rate = encoder.sample_rate if encoder is not None else spec.sample_rate
        audio = load_audio(clip.path, sample_rate=rate, max_seconds=spec.max_audio_s)
        key = cache.key(audio.content_hash, spec.encoder_id, spec.settings_key)
        emb = cache.get(key)
        if emb is None:
            encoder = encoder or load_encoder(
                spec.spec,
                precision=spec.precision,
                device="cpu",
                trust_remote_code=spec.trust_remote_code,
                local_files_only=True,
            )
            emb = encoder.encode(audio)
            cache.put(key, emb)
            encoded += 1
        layers = emb.layers_padded if padded else emb.layers
        rows.append((clip.clip_id, layers[emb.mask].numpy(), clip.duration_s, emb.encoder_id))
    if encoded:
        log.info("refit: embedded %d arena clips that had no cached embedding", encoded)
    frame = pd.DataFrame(rows, columns=["id", "embedding", "duration_s", "encoder_id"])
    return frame.assign(platform="arena", split="pool")


def run_in_subprocess(
    request: RefitRequest, workdir: Path, *, timeout_s: float | None = None
) -> RefitOutcome:
    """Run :func:`execute` in a child process (low priority, capped threads). Raises
    RefitProcessError (it failed or wrote no outcome) or subprocess.TimeoutExpired (it ran past
    ``timeout_s`` and was killed)."""
    workdir.mkdir(parents=True, exist_ok=True)
    req, out = workdir / "request.json", workdir / "outcome.json"
    req.write_text(request.to_json())
    out.unlink(missing_ok=True)
    threads, nice = str(request.threads), request.nice
    root = str(Path(__file__).resolve().parents[2])  # import this very apex package
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "apex.training.worker", str(req), str(out)],
        env=env,
        preexec_fn=(lambda: os.nice(nice)) if hasattr(os, "nice") and nice > 0 else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RefitProcessError(f"the refit process failed (exit {proc.returncode}): {tail}")
    return RefitOutcome.from_json(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """``python -m apex.training.worker REQUEST.json OUTCOME.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m apex.training.worker REQUEST.json OUTCOME.json", file=sys.stderr)
        return 2
    exit_with_parent(os.getppid())  # an app killed mid-refit leaves no refit running
    outcome = execute(RefitRequest.from_json(Path(args[0]).read_text()))
    write_text_atomic(args[1], outcome.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The offline demo model: :class:`~apex.heads.ApexHeads` fitted on the synthetic demo corpus.

When no MERT weights or published heads can be had, the product still answers with these heads on
the built-in fallback encoder, and says so. They are fitted on first use with a deliberately small
loop (full-batch Adam, :data:`FIT_STEPS` steps, best validation step kept):

- inputs: the fallback encoder's descriptors of each clip, averaged over its segments (``L = 1``);
- targets: the corpus's seven ground-truth scores, fitted on the 0-1 rescaled scales (MSE for the
  means; a Gaussian NLL on detached residuals for the log-variance, so the uncertainty head never
  pulls on the means);
- preference: a Bradley-Terry loss on simulated votes between training clips.

The result lives in ``settings.models_dir / "demo-<version>"``; the version hashes everything that
changes the fit (this module's version, the corpus version, seed and size, the fallback descriptor
settings), so a change rebuilds it. Builds are serialised by a file lock and published by an atomic
directory rename: concurrent callers (threads or processes) get one complete model.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from apex.checkpoints import CONFIG_NAME, METADATA_NAME, WEIGHTS_NAME, save_model
from apex.heads import ApexHeads, HeadsConfig
from apex.settings import Settings
from apex.tasks import ENGAGEMENT, SCORE_NAMES, SCORE_RANGES

DEMO_MODEL_VERSION = "2"
FIT_STEPS = 300
LEARNING_RATE = 3e-3
HIDDEN = [128, 64]
#: Clips used for fitting at most (a deterministic, split-stratified subset); bounds the
#: first-use build time, which is dominated by decoding and the fallback encoder (about 20-40 ms
#: per clip), so the default 480-clip corpus is used whole.
MAX_FIT_CLIPS = 480
VOTES_PER_CLIP = 8
NLL_WEIGHT, BT_WEIGHT = 0.1, 0.1


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
            f"fit{MAX_FIT_CLIPS}x{FIT_STEPS}",
            FallbackEncoder().settings_key(),
        )
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
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
        staging = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            build_demo_model(settings, staging, version=target.name.removeprefix("demo-"))
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------- data
def _fit_subset(meta: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most ``limit`` clips, every split and system kept in proportion (deterministic)."""
    if len(meta) <= limit:
        return meta.reset_index(drop=True)
    order = meta.sort_values(["split", "system", "clip_id"]).reset_index(drop=True)
    picks = np.floor(np.arange(limit) * len(order) / limit).astype(int)
    return order.iloc[picks].reset_index(drop=True)


def _embed(settings: Settings, corpus: Path, files: list[str]) -> torch.Tensor:
    """Song vectors ``[N, 1, D]``: fallback descriptors averaged over each clip's segments."""
    from apex.audio import load_audio
    from apex.encoders import CachedEncoder, EmbeddingCache, FallbackEncoder

    encoder = CachedEncoder(FallbackEncoder(), EmbeddingCache(settings.cache_dir / "embeddings"))
    vectors = []
    for name in files:
        emb = encoder.encode(load_audio(corpus / name, sample_rate=encoder.sample_rate))
        weights = emb.mask.to(torch.float32)[:, None, None]
        vectors.append((emb.layers * weights).sum(0) / weights.sum().clamp_min(1.0))
    return torch.stack(vectors)


def _vote_pairs(meta: pd.DataFrame, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated votes as clip index pairs ``[P, 2]`` and P(first wins) targets ``[P]``."""
    from apex.demo import simulate_votes

    votes = simulate_votes(meta, VOTES_PER_CLIP * len(meta), seed=seed)
    votes = votes[votes["preference"].isin(["A", "B", "TIE"])]
    index = {clip: i for i, clip in enumerate(meta["clip_id"])}
    pairs = np.stack([votes["clip_a"].map(index), votes["clip_b"].map(index)], axis=1)
    target = votes["preference"].map({"A": 1.0, "B": 0.0, "TIE": 0.5}).to_numpy(float)
    return torch.tensor(pairs, dtype=torch.long), torch.tensor(target, dtype=torch.float32)


# ---------------------------------------------------------------------------- fitting
def _scales() -> tuple[torch.Tensor, torch.Tensor]:
    low = torch.tensor([SCORE_RANGES[n][0] for n in SCORE_NAMES])
    high = torch.tensor([SCORE_RANGES[n][1] for n in SCORE_NAMES])
    return low, high - low


def _losses(
    heads: ApexHeads, x: torch.Tensor, y01: torch.Tensor, pairs: torch.Tensor, p: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, mean-squared error on the 0-1 scales) over the rows of ``x``."""
    low, span = _scales()
    out = heads(x)
    mean = (torch.stack([out[n] for n in SCORE_NAMES], 1) - low) / span
    var = (torch.stack([out[f"{n}_std"] for n in SCORE_NAMES], 1) / span) ** 2
    mse = ((mean - y01) ** 2).mean()
    nll = 0.5 * (var.log() + (mean.detach() - y01) ** 2 / var).mean()
    total = mse + NLL_WEIGHT * nll
    if len(pairs):
        logit = out["preference"][pairs[:, 0]] - out["preference"][pairs[:, 1]]
        total = total + BT_WEIGHT * torch.nn.functional.binary_cross_entropy_with_logits(logit, p)
    return total, mse


def _pairs_within(pairs: torch.Tensor, p: torch.Tensor, rows: np.ndarray, n: int):
    """Pairs whose two clips are both in ``rows`` (of ``n`` clips), re-indexed into ``rows``."""
    remap = torch.full((n,), -1, dtype=torch.long)
    remap[torch.as_tensor(rows, dtype=torch.long)] = torch.arange(len(rows))
    local = remap[pairs]
    keep = (local >= 0).all(dim=1)
    return local[keep], p[keep]


def fit_heads(
    x: torch.Tensor, y: torch.Tensor, split: np.ndarray, pairs: torch.Tensor, p: torch.Tensor
) -> ApexHeads:
    """Fit demo heads on ``x`` ``[N, 1, D]``, scores ``y`` ``[N, 7]``; keep the best val step."""
    torch.manual_seed(0)
    train = np.flatnonzero(split == "train")
    val = np.flatnonzero(split == "val")
    val = val if len(val) else train
    low, span = _scales()
    y01 = (y - low) / span
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=x.shape[-1], hidden=HIDDEN, dropout=0.1))
    flat = x[train, 0]
    heads.set_feature_stats(
        flat.mean(0), flat.std(0) if len(train) > 1 else torch.ones_like(flat[0])
    )
    train_pairs, train_p = _pairs_within(pairs, p, train, len(x))
    optimizer = torch.optim.Adam(heads.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    best, best_state = float("inf"), copy.deepcopy(heads.state_dict())
    for step in range(FIT_STEPS):
        heads.train()
        loss, _ = _losses(heads, x[train], y01[train], train_pairs, train_p)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9 or step == FIT_STEPS - 1:
            heads.eval()
            with torch.no_grad():
                _, val_mse = _losses(heads, x[val], y01[val], pairs[:0], p[:0])
            if float(val_mse) < best:
                best, best_state = float(val_mse), copy.deepcopy(heads.state_dict())
    heads.load_state_dict(best_state)
    return heads.eval()


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3:
        return None
    rho = np.corrcoef(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())[0, 1]
    return None if np.isnan(rho) else float(rho)


def _metrics(
    outputs: dict[str, np.ndarray], y: np.ndarray, held: np.ndarray, pairs, p
) -> dict[str, Any]:
    spearman = {n: _spearman(outputs[n][held], y[held, i]) for i, n in enumerate(SCORE_NAMES)}
    held_pairs, held_p = _pairs_within(pairs, p, held, len(y))
    decisive = held_p != 0.5
    pref = outputs["preference"][held]
    if int(decisive.sum()):
        a, b = held_pairs[decisive].numpy().T
        agree = (pref[a] > pref[b]) == (held_p[decisive].numpy() > 0.5)
        accuracy = float(agree.mean())
    else:
        accuracy = None
    return {
        "held_out_clips": len(held),
        "spearman": spearman,
        "preference_accuracy": accuracy,
        "held_out_votes": int(decisive.sum()),
    }


def build_demo_model(settings: Settings, directory: Path, *, version: str) -> Path:
    """Fit the demo heads on the demo corpus of ``settings`` and save them to ``directory``."""
    from apex.demo import ensure_demo_corpus, load_metadata
    from apex.encoders import FallbackEncoder

    corpus = ensure_demo_corpus(settings)
    meta = _fit_subset(load_metadata(corpus), MAX_FIT_CLIPS)
    x = _embed(settings, corpus, list(meta["file_name"]))
    y = torch.as_tensor(meta[list(SCORE_NAMES)].to_numpy(float), dtype=torch.float32)
    pairs, p = _vote_pairs(meta, settings.demo_seed)
    split = meta["split"].to_numpy(str)
    heads = fit_heads(x, y, split, pairs, p)
    with torch.no_grad():
        outputs = {k: v.numpy() for k, v in heads(x).items()}
    held = np.flatnonzero(split == "test")
    held = held if len(held) >= 3 else np.flatnonzero(split != "train")
    encoder = FallbackEncoder()
    metadata = {
        "model_id": "apex-arena-demo",
        "version": version,
        "kind": "demo",
        "encoder_id": encoder.encoder_id,
        "encoder_spec": "fallback",
        "encoder_settings": encoder.settings_key(),
        "preference_trained": True,
        "reference_distribution": {n: sorted(map(float, outputs[n])) for n in ENGAGEMENT},
        "target_distribution": {n: sorted(map(float, meta[n])) for n in ENGAGEMENT},
        "data_fingerprints": {"demo_corpus": _fingerprint(meta)},
        "metrics": _metrics(outputs, y.numpy(), held, pairs, p),
        "training": {"clips": len(meta), "steps": FIT_STEPS, "lr": LEARNING_RATE},
        "description": "Demo heads fitted on the synthetic demo corpus; not the published APEX.",
    }
    return save_model(heads, directory, metadata=metadata)


def _fingerprint(meta: pd.DataFrame) -> str:
    text = meta[["clip_id", *SCORE_NAMES]].to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]

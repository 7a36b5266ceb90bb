"""Training speed at the paper's scale, on synthetic embeddings (not a timed test).

Workload: 211k songs x 768 dims (song mode, one layer), seven regression targets with the usual
unknowns (aesthetics missing for 30 % of songs), plus 50k battles trained with the Bradley-Terry
loss: :func:`apex.training.loop.train` with ApexHeads, uncertainty weighting, batch 512, 10 epochs.

Baseline, measured in the same run: the reference's loop shape — a ``torch.utils.data.Dataset``
whose ``__getitem__`` builds one tensor per field per row, a ``DataLoader`` collating batches of 64
fp32 rows, the reference MLP (7 branches) — for a fixed number of batches, extrapolated to 10
epochs of the same 211k songs. (The reference's own batch is 512 on GPUs; 64 is the per-GPU-ish
small-batch loop shape this machine would run.)

Targets: 10 epochs <= 120 s and peak RSS <= 4 GB on the 2-core box. Prints progress, then one JSON
line. Other jobs share the CPUs; the load average is printed with the result.

    .venv/bin/python benchmarks/train_speed.py [--songs 211000] [--epochs 10] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch

from apex.tasks import SCORE_NAMES
from apex.training.battles import Battles
from apex.training.config import TrainConfig
from apex.training.data import EngagementData
from apex.training.loop import train


def synthetic(songs: int, dim: int, battles: int, seed: int = 0) -> tuple[EngagementData, Battles]:
    """Random embeddings ``[N, 1, D]`` with targets and battles that depend on them linearly."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((songs, 1, dim), dtype=np.float32)
    w = rng.standard_normal((dim, 3), dtype=np.float32) / np.sqrt(dim)
    z = x[:, 0] @ w  # [N, 3] latent factors
    targets = np.empty((songs, len(SCORE_NAMES)), np.float32)
    targets[:, 0] = 100 / (1 + np.exp(-z[:, 0]))
    targets[:, 1] = 100 / (1 + np.exp(-(z[:, 0] + z[:, 1]) / 1.4))
    targets[:, 2:] = 3 + np.tanh(z[:, 2:3] + 0.3 * rng.standard_normal((songs, 5)))
    targets[rng.random(songs) < 0.3, 2:] = np.nan
    split = np.where(rng.random(songs) < 0.9, "train", "val")
    a, b = rng.integers(0, songs, battles), rng.integers(0, songs, battles)
    p = 1 / (1 + np.exp(-(z[a, 0] - z[b, 0])))
    data = EngagementData(
        ids=np.arange(songs).astype(str),
        x=x,
        row_song=np.arange(songs),
        song_x=x,
        targets=targets,
        split=split,
        platform=np.full(songs, "synthetic"),
        duration_s=np.full(songs, 120.0),
        encoder_id="synthetic",
        fingerprint="synthetic",
    )
    pairs = Battles(
        a,
        b,
        (rng.random(battles) < p).astype(np.float32),
        np.arange(battles, dtype=float),
        np.zeros(battles, bool),
    )
    return data, pairs


class _RowDataset(torch.utils.data.Dataset):
    """The reference's per-row dataset: one tensor per field, built in ``__getitem__``."""

    def __init__(self, x: np.ndarray, targets: np.ndarray) -> None:
        self.x, self.targets = x, targets

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"embedding": torch.tensor(self.x[i])}
        for k, name in enumerate(SCORE_NAMES):
            item[name] = torch.tensor(self.targets[i, k])
        return item


def baseline_epoch_seconds(data: EngagementData, batches: int, batch_size: int = 64) -> float:
    """Seconds per epoch of the reference loop shape, from ``batches`` timed batches."""
    from apex.heads import ReferenceHeads

    torch.manual_seed(0)
    model = ReferenceHeads(task="full", shared=2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    y = np.nan_to_num(data.targets, nan=3.0)
    loader = torch.utils.data.DataLoader(
        _RowDataset(data.x[:, 0], y), batch_size=batch_size, shuffle=True, num_workers=0
    )
    mse = torch.nn.MSELoss()
    start, done = None, 0
    for i, batch in enumerate(loader):
        if i == 5:  # warm-up batches excluded
            start = time.perf_counter()
        out = model.predict_mixed(batch["embedding"])
        loss = sum(mse(out[n], batch[n]) for n in SCORE_NAMES)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if start is not None:
            done += 1
        if done >= batches:
            break
    per_batch = (time.perf_counter() - start) / done
    return per_batch * np.ceil(len(data.x) / batch_size)


def peak_rss_gb() -> float:
    """Peak resident set size of this process, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=211_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--battles", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--baseline-batches", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    data, battles = synthetic(args.songs, args.dim, args.battles)
    took = time.perf_counter() - t0
    print(f"data: {args.songs} x {args.dim}, {args.battles} battles in {took:.1f} s")

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        pref_weight=1.0,
        patience=args.epochs,
        progress=True,
        device="cpu",
        precision=args.precision,
    )
    t1 = time.perf_counter()
    result = train(data, config, battles=battles)
    ours = time.perf_counter() - t1
    rss = peak_rss_gb()
    print(
        f"ours: {args.epochs} epochs in {ours:.1f} s, best val {result.best_val:.4f}, "
        f"peak RSS {rss:.2f} GB"
    )

    epoch_base = baseline_epoch_seconds(data, args.baseline_batches)
    base = epoch_base * args.epochs
    print(
        f"baseline (per-row DataLoader, batch 64, reference MLP): {epoch_base:.1f} s/epoch "
        f"-> {base:.0f} s for {args.epochs} epochs (extrapolated)"
    )
    record = {
        "benchmark": "train_speed",
        "songs": args.songs,
        "dim": args.dim,
        "tasks": len(SCORE_NAMES),
        "battles": args.battles,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "train_s": round(ours, 2),
        "target_s": 120,
        "peak_rss_gb": round(rss, 3),
        "target_gb": 4.0,
        "baseline_s_extrapolated": round(base, 1),
        "speedup_vs_baseline": round(base / ours, 2),
        "ok": bool(ours <= 120 and rss <= 4.0),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()

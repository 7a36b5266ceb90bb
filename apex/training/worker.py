"""A refit in its own process, at low priority with capped threads, so it cannot starve visitors.

The app's refit job (``annotation.refit_job``) hands a refit over as a JSON request (file paths
and numbers only: engagement shards, pool rows, a votes Parquet file, the registry, the serving
model's path, hyperparameter overrides) and runs ``python -m apex.training.worker REQUEST OUT``
at niceness ``APEX_REFIT_NICE`` (default 10) with ``OMP_NUM_THREADS`` / ``torch.set_num_threads``
at the request's ``threads`` (``APEX_REFIT_THREADS``, default 1): scoring and voting keep the
other cores, and the kernel prefers them on a busy one. The outcome comes back as JSON in ``OUT``.

:func:`execute` is the refit itself (the same code in or out of process); :func:`run_in_subprocess`
starts, waits and reports a failure with the child's last lines of stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from apex.files import write_text_atomic

#: Default scheduling niceness of the refit process (0 normal, 19 lowest; ``APEX_REFIT_NICE``).
REFIT_NICE = 10


class RefitProcessError(RuntimeError):
    """The refit process failed; the message carries its exit code and last stderr lines."""


def execute(request: dict[str, Any]) -> dict[str, Any]:
    """Run the refit of ``request`` here; returns the outcome as a JSON-ready dict.

    Request keys: ``engagement`` (shards), ``pool`` (pool-row shards or None), ``votes``
    (Parquet), ``ratings`` (Parquet or None), ``registry`` (folder), ``serving`` (model path or
    None), ``threads``, ``holdout``, ``train`` (non-zero overrides of
    :func:`apex.training.config.scaled_train_config`: ``epochs``, ``batch_size``, ``lr``,
    ``patience``, and any other :class:`TrainConfig` field), ``kind``, ``encoder_spec``,
    ``model_repo``.
    """
    import pandas as pd
    import torch

    from apex.checkpoints import load_model
    from apex.training.config import scaled_train_config
    from apex.training.data import load_engagement
    from apex.training.refit import RefitConfig, run_refit
    from apex.training.registry import ModelRegistry

    torch.set_num_threads(int(request.get("threads", 1)))
    ratings = pd.read_parquet(request["ratings"]) if request.get("ratings") else None
    data, transform = load_engagement(
        request["engagement"], ratings=ratings, pool=request.get("pool")
    )
    votes = pd.read_parquet(request["votes"])
    train = {"pref_weight": 1.0, "device": "cpu", **request.get("train", {})}
    train_cfg = scaled_train_config(len(data.songs_in("train")), **train)
    serving = load_model(request["serving"]) if request.get("serving") else None
    config = RefitConfig(
        train=train_cfg,
        holdout_fraction=float(request.get("holdout", 0.2)),
        model_repo=request.get("model_repo"),
        kind=request.get("kind", "custom"),
        encoder_spec=request.get("encoder_spec"),
    )
    outcome = run_refit(
        data, transform, votes, ModelRegistry(request["registry"]), config, serving=serving
    )
    return {
        "version": str(outcome.version),
        "promote": bool(outcome.decision.promote),
        "reasons": list(outcome.decision.reasons),
        "challenger": outcome.decision.challenger,
        "serving": outcome.decision.champion,
        "reports": outcome.reports,
        "push": outcome.push,
        "train_config": asdict(train_cfg),
        "pool_rows": int((data.split == "pool").sum()),
    }


def run_in_subprocess(
    request: dict[str, Any], workdir: Path, *, timeout_s: float | None = None
) -> dict[str, Any]:
    """Run :func:`execute` in a child process (low priority, capped threads); its outcome dict.

    Raises:
        RefitProcessError: the child exited non-zero or wrote no outcome.
        subprocess.TimeoutExpired: it ran past ``timeout_s`` (the child is killed).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    req, out = workdir / "request.json", workdir / "outcome.json"
    req.write_text(json.dumps(request, default=str))
    out.unlink(missing_ok=True)
    threads = str(int(request.get("threads", 1)))
    nice = int(request.get("nice", REFIT_NICE))

    def lower_priority() -> None:  # runs in the child between fork and exec
        os.nice(nice)

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
        preexec_fn=lower_priority if hasattr(os, "nice") and nice > 0 else None,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise RefitProcessError(f"the refit process failed (exit {proc.returncode}): {tail}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """``python -m apex.training.worker REQUEST.json OUTCOME.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m apex.training.worker REQUEST.json OUTCOME.json", file=sys.stderr)
        return 2
    outcome = execute(json.loads(Path(args[0]).read_text()))
    write_text_atomic(args[1], json.dumps(outcome, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The whole loop offline: simulated listeners vote in rounds, a refit after each, the gate decides.

Setting (fallback encoder, synthetic demo corpus; nothing here reaches the network):

- the arena's clips are the corpus's ``train`` and ``val`` clips; simulated listeners with a hidden
  taste (:mod:`apex.demo.listeners`, a fixed function of the ground truth) vote on random pairs of
  clips of different systems, in rounds up to 500, 1,000, 2,000 and 4,000 votes;
- **held-out listener preferences**: votes of the same listeners on pairs of ``test`` clips, which
  no refit ever trains on; "agreement" is the share of them the serving model predicts;
- the serving model starts as the offline demo model (what a fresh Space serves) and after every
  round the production refit (:func:`apex.training.refit.run_refit`, data-scaled configuration)
  trains a challenger on all votes so far; the gate compares it with the serving model on the
  time-split held-out votes and held-out songs, and only a promoted challenger serves next;
- **baseline**, in the same run: the engagement-only model (same stack, no votes, its predicted
  scores ranked through the fixed link of :data:`apex.heads.LINK_WEIGHTS`).

Also ``/score``-path latency (``Scorer.score`` of a demo clip) while idle and while a refit runs in
its own low-priority process (:mod:`apex.training.worker`), the way the app runs it.

Targets: agreement rises with votes, ends >= 0.03 above the baseline, and no promotion ever lowers
held-out agreement. Usage: ``python benchmarks/closed_loop.py [--clips 240] [--data-dir DIR]``.
``--published``: the same loop on the product's configuration, replicas of the published heads on
MERT (:mod:`benchmarks.closed_loop_replica`). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROUNDS = (500, 1000, 2000, 4000)
#: Seconds the latency part's refit process may run (it is stopped then; only its load counts).
REFIT_WINDOW_S = 120.0
HELD_OUT_VOTES = 2000


def _votes(meta: pd.DataFrame, utility, n: int, rng, start: float) -> pd.DataFrame:
    """``n`` listener votes on random pairs of clips of different systems in ``meta``."""
    from apex.demo.listeners import listener_votes

    ids = meta["clip_id"].astype(str).to_numpy()
    systems = meta["system"].astype(str).to_numpy()
    a = rng.integers(0, len(ids), 4 * n)
    b = rng.integers(0, len(ids), 4 * n)
    ok = systems[a] != systems[b]
    a, b = a[ok][:n], b[ok][:n]
    return pd.DataFrame(
        {
            "battle_uuid": [f"bench-{start:.0f}-{i}" for i in range(len(a))],
            "clip_a": ids[a],
            "clip_b": ids[b],
            "preference": listener_votes(utility, ids[a], ids[b], rng),
            "timestamp": start + 30.0 * np.arange(len(a)),
            "is_instrumental": False,
        }
    )


def _agreement(model, info, data, held) -> float:
    from apex.evaluation.metrics import evaluate_model
    from apex.tasks import TASK_OUTPUTS

    used = bool(info.metadata.get("preference_trained", False))
    tasks = TASK_OUTPUTS.get(info.metadata.get("train_config", {}).get("task"))
    report = evaluate_model(model, data, battles=held, use_preference=used, tasks=tasks)
    return float(report["pairwise"]["accuracy"])


def _latency(settings, corpus: Path, files: list[str], worker_request=None) -> list[float]:
    """Milliseconds per ``Scorer.score`` call (embedding cache off), optionally under a refit."""
    from apex.checkpoints import load_model
    from apex.demo.model import ensure_demo_model
    from apex.encoders import FallbackEncoder
    from apex.scorer import Scorer
    from apex.training.worker import run_in_subprocess

    heads, info = load_model(ensure_demo_model(settings))
    scorer = Scorer(heads, info, FallbackEncoder(), device="cpu")
    done = threading.Event()
    thread = None
    if worker_request is not None:
        work = settings.data_dir / "bench-refit"

        def refit() -> None:
            try:  # long enough to cover the calls; the child is killed at the timeout
                run_in_subprocess(worker_request, work, timeout_s=REFIT_WINDOW_S)
            except subprocess.TimeoutExpired:
                pass
            finally:
                done.set()

        thread = threading.Thread(target=refit, daemon=True)
        thread.start()
        time.sleep(3.0)  # past the child's start-up: measure while it trains
    times = []
    for name in files:
        t0 = time.perf_counter()
        scorer.score([corpus / name])
        times.append(1000 * (time.perf_counter() - t0))
        if worker_request is not None and done.is_set():
            break  # the refit ended before the calls did: later calls would be idle ones
    if thread is not None:
        thread.join()
    return times


def run(clips: int, data_dir: Path, seed: int, latency: bool) -> dict:
    from apex.checkpoints import ModelInfo, load_model
    from apex.demo import ensure_demo_corpus, load_metadata
    from apex.demo.listeners import hidden_utility
    from apex.demo.model import demo_engagement, ensure_demo_model
    from apex.settings import Settings
    from apex.training.battles import battles_from_votes
    from apex.training.config import scaled_train_config
    from apex.training.data import load_engagement
    from apex.training.loop import train
    from apex.training.refit import RefitConfig, run_refit
    from apex.training.registry import ModelRegistry

    settings = Settings.from_env({}, data_dir=data_dir, demo_clips=clips, demo_seed=seed)
    t0 = time.perf_counter()
    shard = demo_engagement(settings)
    data, transform = load_engagement(shard)
    meta = load_metadata(ensure_demo_corpus(settings))
    utility = hidden_utility(meta)
    rng = np.random.default_rng(seed)
    held_votes = _votes(meta[meta["split"] == "test"], utility, HELD_OUT_VOTES, rng, 0.0)
    held = battles_from_votes(held_votes, data.index_of())
    arena = meta[meta["split"] != "test"]
    n_train = len(data.songs_in("train"))
    base_cfg = scaled_train_config(n_train, seed=seed, device="cpu")
    baseline = train(data, base_cfg)
    baseline_agreement = _agreement(
        baseline.model, ModelInfo("engagement-only", metadata={"train_config": {}}), data, held
    )
    serving = load_model(ensure_demo_model(settings))
    prepared_s = time.perf_counter() - t0
    registry = ModelRegistry(data_dir / "bench-registry" / f"run-{time.time_ns()}")
    config = RefitConfig(train=replace(base_cfg, pref_weight=1.0), kind="demo")
    curve = [{"votes": 0, "agreement": _agreement(*serving, data, held), "version": "demo"}]
    votes = pd.DataFrame()
    lowered = []
    for target in ROUNDS:
        new = _votes(arena, utility, target - len(votes), rng, 1e9 + 30.0 * len(votes))
        votes = pd.concat([votes, new], ignore_index=True)
        outcome = run_refit(data, transform, votes, registry, config, serving=serving)
        challenger = load_model(outcome.version)
        challenger_agreement = _agreement(*challenger, data, held)
        before = curve[-1]["agreement"]
        if outcome.decision.promote:
            serving = challenger
            if challenger_agreement < before:
                lowered.append(target)
        curve.append(
            {
                "votes": target,
                "agreement": _agreement(*serving, data, held),
                "version": serving[1].version,
                "promoted": bool(outcome.decision.promote),
                "challenger_agreement": challenger_agreement,
                "reasons": outcome.decision.reasons,
            }
        )
        print(
            f"{target:5d} votes: serving {curve[-1]['agreement']:.3f} "
            f"(challenger {challenger_agreement:.3f}, "
            f"{'promoted' if outcome.decision.promote else 'refused'}); "
            f"baseline {baseline_agreement:.3f}",
            flush=True,
        )
    figures = {
        "benchmark": "closed_loop",
        "clips": clips,
        "held_out_votes": len(held),
        "prepare_s": round(prepared_s, 1),
        "votes": [c["votes"] for c in curve],
        "agreement": [round(c["agreement"], 4) for c in curve],
        "promoted": [c.get("promoted") for c in curve[1:]],
        "baseline_engagement_only": round(baseline_agreement, 4),
        "final_minus_baseline": round(curve[-1]["agreement"] - baseline_agreement, 4),
        "rises": curve[-1]["agreement"] > curve[0]["agreement"],
        "promotions_that_lowered_agreement": lowered,
    }
    figures["target_met"] = bool(
        figures["rises"] and figures["final_minus_baseline"] >= 0.03 and not lowered
    )
    if latency:
        figures.update(_latency_figures(settings, meta, votes, shard, registry))
    return figures


def _latency_figures(settings, meta, votes, shard, registry) -> dict:
    corpus = settings.demo_dir
    files = list(meta["file_name"])[:12]
    votes_path = settings.data_dir / "bench-votes.parquet"
    votes.to_parquet(votes_path)
    from apex.training.request import RefitRequest

    request = RefitRequest(
        votes=str(votes_path),
        registry=str(registry.root),
        engagement=str(shard),
        threads=settings.refit_threads,
        train={"epochs": 200, "patience": 200},
    )
    idle = _latency(settings, corpus, files, None)
    busy = _latency(settings, corpus, files, request)
    idle_ms, busy_ms = statistics.median(idle), statistics.median(busy)
    print(f"score latency: idle {idle_ms:.0f} ms, during a refit {busy_ms:.0f} ms (median)")
    return {
        "score_ms_idle": round(idle_ms, 1),
        "score_ms_during_refit": round(busy_ms, 1),
        "score_latency_ratio": round(busy_ms / idle_ms, 2),
        "latency_calls": [len(idle), len(busy)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=240, help="demo corpus size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep corpus/cache here")
    parser.add_argument("--no-latency", action="store_true", help="skip the /score latency part")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    parser.add_argument(
        "--published", action="store_true", help="replicas of amaai-lab/apex on MERT-v1-95M"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)  # oversubscribed OpenMP threads spin on a busy machine
    if args.published:
        from closed_loop_replica import run_published

        with tempfile.TemporaryDirectory() as tmp:
            work = args.data_dir or Path(tmp)
            figures = run_published(args.clips, work, args.seed)
    elif args.data_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(args.clips, Path(tmp), args.seed, not args.no_latency)
    else:
        figures = run(args.clips, args.data_dir, args.seed, not args.no_latency)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""``apex eval``: evaluate a model (JSON report + table), the demo evidence, or the arena::

apex eval --model models/mine --data shards/ --votes export/ --json report.json
apex eval arena --data var/arena-demo --model demo --model var/models/v0002-... --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from apex.cli import EXIT_OK, EXIT_USAGE, dataclass_flags, fail, guarded
from apex.commands.common import read_table, write_json
from apex.settings import Settings
from apex.training.config import TrainConfig, scaled_train_config


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``eval arena`` to the ``apex`` parser."""
    from apex.evaluation.cv import FOLD_SCHEMES
    from apex.sources.music_arena import MusicArenaError
    from apex.training.refit import RefitConfig

    p = subparsers.add_parser("eval", help="evaluate a model (JSON report + table), or --demo")
    p.add_argument("--model", default=None, help="model directory, .pt file or Hub id")
    p.add_argument("--data", type=Path, default=None, help="engagement shards (file or folder)")
    p.add_argument("--votes", type=Path, default=None, help="votes: Parquet file/folder or CSV")
    dataclass_flags(p, TrainConfig, only=("mode",), choices={"mode": ("song", "segment")})
    held = {"holdout_fraction": "share of the latest votes evaluated"}
    dataclass_flags(p, RefitConfig, only=("holdout_fraction",), help=held)
    p.add_argument("--all-votes", action="store_true", help="evaluate every vote, not the latest")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--demo", action="store_true", help="offline evidence on the demo corpus")
    p.add_argument("--demo-votes", type=int, default=4000, help="simulated votes for --demo")
    p.set_defaults(func=guarded(cmd_eval))
    targets = p.add_subparsers(dest="subcommand", metavar="TARGET")
    arena = targets.add_parser(
        "arena", help="the paper's arena experiment on Music Arena battles (AUC vs 0.600 / 0.614)"
    )
    add = arena.add_argument
    add(
        "--data",
        default="music-arena",
        help="folder in Music Arena's layout (battle_data/, audio_files/), 'music-arena' (the "
        "Hub release) or another Hub dataset id in that layout (default: %(default)s)",
    )
    add("--batch", action="append", default=[], help="only this batch, e.g. 02-2025SEP (repeat)")
    add(
        "--model",
        action="append",
        default=[],
        help="auto, demo, a model folder, a .pt file or a Hub id; repeat to compare models on the "
        "same battles (default: auto)",
    )
    add("--encoder", default=None, help="encoder override (default: the model's)")
    add("--device", default=None, help="auto, cpu, cuda, cuda:N")
    add(
        "--features",
        choices=("engagement", "all"),
        default="engagement",
        help="engagement: the paper's final feature set; all: the seven scores",
    )
    add("--folds", type=int, default=10)
    add(
        "--schemes",
        default=",".join(FOLD_SCHEMES),
        help="comma-separated fold schemes: paper (the published, label-stratified folds), "
        "prompt, pair, prompt+pair (grouped) (default: %(default)s)",
    )
    add("--bootstrap", type=int, default=1000, help="resamples per interval (default: %(default)s)")
    add(
        "--permutations", type=int, default=1000, help="per p-value, 0: none (default: %(default)s)"
    )
    add("--seed", type=int, default=42)
    add(
        "--svm",
        choices=("grid", "fixed", "off"),
        default="grid",
        help="grid: the paper's nested grid search (slow); fixed: one RBF SVM; off",
    )
    add("--out", type=Path, default=None, help="write the JSON report here")
    add("--json", action="store_true", help="print the whole JSON report instead of the tables")
    arena.set_defaults(func=guarded(cmd_eval_arena, errors=(MusicArenaError, OSError)))


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate ``--model`` on ``--data`` (+ held-out ``--votes``), or run ``--demo``."""
    if args.demo:
        evidence = demo_evidence(Settings.from_env(), n_votes=args.demo_votes)
        print(format_evidence(evidence))
        write_json(args.json, evidence)
        return EXIT_OK
    if args.model is None or args.data is None:
        return fail(args, "needs --model and --data (or --demo)", EXIT_USAGE)
    from apex.checkpoints import load_model
    from apex.evaluation.metrics import evaluate_model, format_table
    from apex.training.battles import battles_from_votes, time_split
    from apex.training.data import TargetTransform, load_engagement

    heads, info = load_model(args.model)
    stats = info.metadata.get("target_transform")
    transform = TargetTransform.from_dict(stats) if stats else None  # the model's own scale
    data, _ = load_engagement(args.data, mode=args.mode, transform=transform)
    battles = None
    votes = read_table(args.votes)
    if votes is not None:
        battles = battles_from_votes(votes, data.index_of())
        if not args.all_votes:
            battles = time_split(battles, args.holdout_fraction)[1]
    used = bool(info.metadata.get("preference_trained", False))
    report = evaluate_model(heads, data, battles=battles, use_preference=used)
    print(format_table({info.model_id: report}))
    write_json(args.json, report)
    return EXIT_OK


def demo_evidence(settings: Settings, *, n_votes: int = 4000) -> dict:
    """Train the ablation and run the gate on the demo corpus; returns a JSON-ready report."""
    import numpy as np

    from apex.demo import ensure_demo_corpus, load_metadata, simulate_votes
    from apex.demo.model import demo_engagement
    from apex.evaluation.metrics import evaluate_model, pairwise_metrics, preference_utility
    from apex.training.battles import battles_from_votes, time_split
    from apex.training.data import load_engagement
    from apex.training.loop import predict
    from apex.training.refit import train_with_votes

    data, transform = load_engagement(demo_engagement(settings))
    votes = simulate_votes(load_metadata(ensure_demo_corpus(settings)), n_votes, seed=0)
    battles = battles_from_votes(votes, data.index_of())
    fit_battles, held_out = time_split(battles)
    unseen_songs = data.songs_in("val", "test")
    unseen = np.isin(held_out.a, unseen_songs) & np.isin(held_out.b, unseen_songs)
    base = scaled_train_config(len(data.songs_in("train")), seed=0)
    variants = {
        "popularity-only": replace(base, task="popularity"),
        "full": base,
        "full+preferences": replace(base, pref_weight=1.0),
    }
    reports, results = {}, {}
    for name, config in variants.items():
        result = train_with_votes(data, config, fit_battles)
        use_pref = config.pref_weight > 0
        report = evaluate_model(
            result.model, data, battles=held_out, use_preference=use_pref, tasks=config.tasks
        )
        outputs = predict(result.model, data.song_x)
        utility = preference_utility(
            {k: outputs[k] for k in (*config.tasks, "preference")}, use_pref
        )
        report["pairwise_unseen_clips"] = pairwise_metrics(utility, held_out.take(unseen))
        reports[name], results[name] = report, result
    gate = _demo_gate(settings, data, transform, votes, results["full"])
    return {
        "corpus": {
            "clips": len(data.ids),
            "encoder": data.encoder_id,
            "test_clips": len(data.songs_in("test")),
        },
        "votes": {
            "simulated": len(votes),
            "usable": len(battles),
            "train": len(fit_battles),
            "held_out": len(held_out),
            "held_out_unseen_clips": int(unseen.sum()),
            "both_bad_excluded": int((votes["preference"] == "BOTH_BAD").sum()),
        },
        "ablation": reports,
        "gate": gate,
    }


def _demo_gate(settings: Settings, data, transform, votes, champion_result) -> dict:
    """The production refit with preferences against the engagement-only champion."""
    from apex.training.refit import RefitConfig, run_refit
    from apex.training.registry import ModelRegistry
    from apex.training.saving import model_metadata, save_trained

    registry = ModelRegistry(settings.models_dir / "demo-evidence")
    shutil.rmtree(registry.root, ignore_errors=True)
    champion = registry.new_version()
    meta = model_metadata(champion_result, data, transform, version=champion.name, kind="demo")
    save_trained(champion_result, champion, meta)
    registry.promote(champion)
    config = RefitConfig(train=replace(champion_result.config, pref_weight=1.0))
    outcome = run_refit(data, transform, votes, registry, config)
    return {**asdict(outcome.decision), "version": outcome.version.name}


def format_evidence(evidence: dict) -> str:
    """The demo report for people: ablation table, preference gain, the gate's verdict."""
    from apex.evaluation.metrics import format_table

    ab = evidence["ablation"]
    unseen = {k: v["pairwise_unseen_clips"]["accuracy"] for k, v in ab.items()}
    base = ab["full"]["pairwise"]["accuracy"]
    pref = ab["full+preferences"]["pairwise"]["accuracy"]
    gate = evidence["gate"]
    verdict = "PROMOTED" if gate["promote"] else "REFUSED"
    return "\n".join(
        [
            "APEX Arena demo evidence (SYNTHETIC demo corpus, fallback encoder; not real music)",
            f"clips: {evidence['corpus']['clips']} ({evidence['corpus']['test_clips']} held-out "
            f"test clips for Spearman); votes: {evidence['votes']}",
            "",
            format_table(ab),
            "pairwise accuracy, held-out votes between val/test clips only: "
            + ", ".join(f"{k} {v:.3f}" for k, v in unseen.items()),
            f"preferences: held-out pairwise accuracy {base:.3f} -> {pref:.3f} "
            f"({pref - base:+.3f})",
            f"gate: challenger {verdict} ({gate['version']})",
            *(f"  - {r}" for r in gate["reasons"]),
        ]
    )


def cmd_eval_arena(args: argparse.Namespace) -> int:
    """Load battles, score clips per model, run the protocol, print it."""
    from apex.evaluation.arena import ArenaEvalError
    from apex.evaluation.report import format_report
    from apex.evaluation.scoring import evaluate_scorer, strict_json
    from apex.files import write_text_atomic
    from apex.loader import load_scorer
    from apex.sources.music_arena import read_release, resolve

    cache = Settings.from_env().cache_dir / "hub-datasets"
    schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    if args.bootstrap < 1 or args.permutations < 0:
        raise ArenaEvalError("--bootstrap must be >= 1 and --permutations >= 0")
    release = read_release(resolve(args.data, cache_dir=cache, batches=tuple(args.batch)))
    battles = release.battles
    if args.batch:
        battles = battles[battles["batch"].isin(args.batch)]
    protocol = {
        "feature_set": args.features,
        "schemes": schemes,
        "folds": args.folds,
        "seed": args.seed,
        "svm": args.svm,
        "n_boot": args.bootstrap,
        "n_perm": args.permutations,
    }
    runs = []
    for spec in args.model or ["auto"]:
        scorer = load_scorer(spec, encoder=args.encoder, device=args.device)
        runs.append(evaluate_scorer(scorer, spec, release, battles, **protocol))
    out = {"data": str(release.root), "skipped_records": release.skipped, "runs": runs}
    text = json.dumps(strict_json(out), indent=2, default=str, allow_nan=False)
    if args.json:
        print(text)
    else:
        for report in runs:
            print(format_report(report), end="\n\n")
        if release.skipped or any(r["unscored_clips"] for r in runs):
            print(f"{len(release.skipped)} records skipped; unscored clips listed in the JSON")
    if args.out:
        write_text_atomic(args.out, text)
        print(f"report -> {args.out}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK

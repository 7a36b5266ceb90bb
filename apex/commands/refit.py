"""``apex refit``: a challenger from data + votes into the registry, promoted if not worse::

apex refit --data shards/ --votes export/ --against demo --accuracy-tolerance 0.01
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apex.cli import EXIT_OK, EXIT_USAGE, dataclass_flags, fail, from_args, guarded
from apex.commands.common import data_flags, read_table
from apex.settings import Settings
from apex.training.config import GateConfig, TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``refit`` to the ``apex`` parser."""
    from apex.training.refit import RefitConfig

    p = subparsers.add_parser("refit", help="challenger from data + votes; promote if not worse")
    data_flags(p)
    p.add_argument("--models-dir", type=Path, default=None, help="default: APEX models dir/refits")
    p.add_argument(
        "--against",
        default=None,
        help="the serving model to gate against and warm-start from (a model directory, .pt "
        "file, Hub repo id such as amaai-lab/apex read from the local cache first, or `demo`); "
        "default: the registry's champion. Without either the challenger is not promoted.",
    )
    p.add_argument("--push", action="store_true", help="push a promoted model to APEX_MODEL_REPO")
    dataclass_flags(
        p,
        RefitConfig,
        only=("holdout_fraction", "warm_start"),
        help={
            "holdout_fraction": "share of the latest votes held out for the gate",
            "warm_start": "start from the serving heads when they read the data's encoder",
        },
    )
    dataclass_flags(p, TrainConfig, overrides={"pref_weight": 1.0, "progress": True})
    dataclass_flags(p, GateConfig)
    p.set_defaults(func=guarded(cmd_refit))


def cmd_refit(args: argparse.Namespace) -> int:
    """Run one refit into the registry; exit 0 whether or not the gate promoted."""
    from apex.checkpoints import load_model
    from apex.training.data import load_engagement
    from apex.training.refit import RefitConfig, run_refit
    from apex.training.registry import ModelRegistry

    settings = Settings.from_env()
    votes = read_table(args.votes)
    if votes is None:
        return fail(args, "needs --votes (export them with `apex votes export`)", EXIT_USAGE)
    train_cfg = from_args(TrainConfig, args)
    data, transform = load_engagement(
        args.data, mode=train_cfg.mode, ratings=read_table(args.ratings)
    )
    registry = ModelRegistry(args.models_dir or settings.models_dir / "refits")
    config = from_args(
        RefitConfig,
        args,
        train=train_cfg,
        gate=from_args(GateConfig, args),
        model_repo=settings.model_repo if args.push else None,
    )
    against = args.against
    if against == "demo":
        from apex.demo.model import ensure_demo_model

        against = ensure_demo_model(settings)
    serving = load_model(against) if against else None
    outcome = run_refit(data, transform, votes, registry, config, serving=serving)
    verdict = "PROMOTED" if outcome.decision.promote else "not promoted (champion kept)"
    print(f"{outcome.version}: {verdict}")
    print(f"  started from: {outcome.warm_start}")
    for reason in [*outcome.decision.reasons, *outcome.notes]:
        print(f"  - {reason}")
    if outcome.push:
        print(outcome.push)
    return EXIT_OK

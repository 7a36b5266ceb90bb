"""``apex train``, ``apex eval`` and ``apex refit``: train, evaluate and refit heads from the shell.

Flags mirror the fields of :class:`apex.training.TrainConfig` and :class:`apex.training.GateConfig`
(``--batch-size`` sets ``batch_size``, ``--accuracy-tolerance`` sets ``accuracy_tolerance``), so
the CLI never drifts from the dataclasses. Votes come in as a file (Parquet shards from
``apex votes export`` or a CSV): ``apex`` does not read the vote store itself.

Examples::

    apex train --data shards/ --out models/mine --task full --loss uncertainty --shared 2
    apex train --data shards/ --out models/ref --family reference --mode segment
    apex eval --model models/mine --data shards/ --votes export/ --json report.json
    apex eval --demo                       # the offline evidence on the synthetic demo corpus
    apex eval arena --data var/arena-demo --model demo   # the paper's Music Arena experiment
    apex refit --data shards/ --votes export/ --pref-weight 1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apex.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``eval`` and ``refit`` to the ``apex`` parser."""
    from apex.training.config import GateConfig, TrainConfig

    p = subparsers.add_parser("train", help="train heads on engagement shards (+ votes)")
    _data_flags(p)
    p.add_argument("--out", type=Path, required=True, help="directory to save the model in")
    _dataclass_flags(p, TrainConfig)
    p.set_defaults(func=_guarded(cmd_train))

    p = subparsers.add_parser("eval", help="evaluate a model (JSON report + table), or --demo")
    p.add_argument("--model", default=None, help="model directory, .pt file or Hub id")
    p.add_argument("--data", type=Path, default=None, help="engagement shards (file or folder)")
    p.add_argument("--votes", type=Path, default=None, help="votes: Parquet file/folder or CSV")
    p.add_argument("--mode", default="song", choices=("song", "segment"))
    p.add_argument("--holdout-fraction", type=float, default=0.2, help="latest votes evaluated")
    p.add_argument(
        "--all-votes", action="store_true", help="evaluate on every vote, not the latest"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.add_argument("--demo", action="store_true", help="offline evidence on the demo corpus")
    p.add_argument("--demo-votes", type=int, default=4000, help="simulated votes for --demo")
    p.set_defaults(func=_guarded(cmd_eval))
    # `apex eval arena`: the paper's out-of-distribution experiment on Music Arena battles.
    from apex.commands import arena_eval

    targets = p.add_subparsers(dest="eval_target", metavar="TARGET")
    arena = targets.add_parser(
        "arena", help="the paper's arena experiment on Music Arena battles (AUC vs 0.600 / 0.614)"
    )
    arena_eval.add_arguments(arena)
    arena.set_defaults(func=arena_eval.run)

    p = subparsers.add_parser("refit", help="challenger from data + votes; promote if not worse")
    _data_flags(p)
    p.add_argument("--models-dir", type=Path, default=None, help="default: APEX models dir/refits")
    p.add_argument(
        "--against",
        default=None,
        help="the serving model to gate against (a model directory, .pt file or `demo`); "
        "default: the registry's champion. Without either the challenger is not promoted.",
    )
    p.add_argument("--holdout-fraction", type=float, default=0.2, help="latest votes held out")
    p.add_argument("--push", action="store_true", help="push a promoted model to APEX_MODEL_REPO")
    _dataclass_flags(p, TrainConfig, overrides={"pref_weight": 1.0, "progress": True})
    _dataclass_flags(p, GateConfig)
    p.set_defaults(func=_guarded(cmd_refit))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input (config values, missing files, malformed data) -> one clear line and exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ValueError, FileNotFoundError) as err:
            print(f"apex {args.command}: {err}", file=sys.stderr)
            return 1

    return run


# ---------------------------------------------------------------------------- flags
def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="engagement shards (file or folder)")
    p.add_argument("--votes", type=Path, default=None, help="votes: Parquet file/folder or CSV")
    p.add_argument("--ratings", type=Path, default=None, help="human 1-5 ratings (clip_id, axes)")


def _dataclass_flags(
    p: argparse.ArgumentParser, cls: type, overrides: dict[str, Any] | None = None
) -> None:
    """One ``--field-name`` flag per dataclass field, typed and defaulted like the field."""
    overrides = overrides or {}
    for f in dataclasses.fields(cls):
        default = overrides.get(f.name, f.default)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"default {default}")


def _from_args(cls: type, args: argparse.Namespace):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def read_votes(path: Path | None):
    """Votes from a CSV or Parquet file/folder (``apex votes export`` layout); None if no path."""
    if path is None:
        return None
    import pandas as pd

    if path.suffix == ".csv":
        return pd.read_csv(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no votes under {path}; export them with `apex votes export`")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _read_table(path: Path | None):
    import pandas as pd

    if path is None:
        return None
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


# ---------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    """Train on ``--data`` (+ ``--votes``), save to ``--out``, print the validation report."""
    from apex.training.config import TrainConfig
    from apex.training.data import battles_from_votes, load_engagement, time_split
    from apex.training.evaluate import evaluate_model, format_table
    from apex.training.loop import train
    from apex.training.refit import model_metadata, save_trained, train_with_votes, write_card

    config = _from_args(TrainConfig, args)
    data, transform = load_engagement(
        args.data, mode=config.mode, ratings=_read_table(args.ratings)
    )
    votes = read_votes(args.votes)
    fit = held = None
    if votes is not None:
        fit, held = time_split(battles_from_votes(votes, data.index_of()), 0.2)
    # early stopping watches the latest training votes, never the held-out ones reported below
    result = train_with_votes(data, config, fit) if fit is not None else train(data, config)
    report = evaluate_model(result.model, data, battles=held, use_preference=config.pref_weight > 0)
    meta = model_metadata(result, data, transform, metrics=report, version=args.out.name)
    save_trained(result, args.out, meta)
    write_card(
        args.out, title=f"APEX heads {args.out.name}", metrics={"model": report}, decision=None
    )
    print(format_table({args.out.name: report}))
    print(f"saved {args.out} (best epoch {result.best_epoch})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate ``--model`` on ``--data`` (+ held-out ``--votes``), or run ``--demo``."""
    if args.demo:
        from apex.training.demo import demo_evidence, format_evidence

        evidence = demo_evidence(Settings.from_env(), n_votes=args.demo_votes)
        print(format_evidence(evidence))
        _write_json(args.json, evidence)
        return 0
    if args.model is None or args.data is None:
        print("apex eval needs --model and --data (or --demo)", file=sys.stderr)
        return 2
    from apex.checkpoints import load_model
    from apex.training.data import TargetTransform, battles_from_votes, load_engagement, time_split
    from apex.training.evaluate import evaluate_model, format_table

    heads, info = load_model(args.model)
    stats = info.metadata.get("target_transform")
    transform = TargetTransform.from_dict(stats) if stats else None  # the model's own scale
    data, _ = load_engagement(args.data, mode=args.mode, transform=transform)
    battles = None
    votes = read_votes(args.votes)
    if votes is not None:
        battles = battles_from_votes(votes, data.index_of())
        if not args.all_votes:
            battles = time_split(battles, args.holdout_fraction)[1]
    used = bool(info.metadata.get("preference_trained", False))
    report = evaluate_model(heads, data, battles=battles, use_preference=used)
    print(format_table({info.model_id: report}))
    _write_json(args.json, report)
    return 0


def cmd_refit(args: argparse.Namespace) -> int:
    """Run one refit into the registry; exit 0 whether or not the gate promoted (1 on error)."""
    from apex.training.config import GateConfig, TrainConfig
    from apex.training.data import load_engagement
    from apex.training.refit import ModelRegistry, RefitConfig, run_refit

    settings = Settings.from_env()
    votes = read_votes(args.votes)
    if votes is None:
        print("apex refit needs --votes (export them with `apex votes export`)", file=sys.stderr)
        return 2
    train_cfg = _from_args(TrainConfig, args)
    data, transform = load_engagement(
        args.data, mode=train_cfg.mode, ratings=_read_table(args.ratings)
    )
    registry = ModelRegistry(args.models_dir or settings.models_dir / "refits")
    config = RefitConfig(
        train=train_cfg,
        gate=_from_args(GateConfig, args),
        holdout_fraction=args.holdout_fraction,
        model_repo=settings.model_repo if args.push else None,
    )
    serving = None
    if args.against:
        from apex.checkpoints import load_model

        if args.against == "demo":
            from apex.demo_model import ensure_demo_model

            serving = load_model(ensure_demo_model(settings))
        else:
            serving = load_model(args.against)
    outcome = run_refit(data, transform, votes, registry, config, serving=serving)
    verdict = "PROMOTED" if outcome.decision.promote else "not promoted (champion kept)"
    print(f"{outcome.version}: {verdict}")
    for reason in outcome.decision.reasons:
        print(f"  - {reason}")
    if outcome.push:
        print(outcome.push)
    return 0


def _write_json(path: Path | None, report: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=float))
        print(f"report written to {path}")

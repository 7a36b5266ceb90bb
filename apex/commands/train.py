"""``apex train``: train heads on engagement shards (+ votes) and save them::

apex train --data shards/ --out models/ref --family reference --mode segment
apex train --data shards/ --votes export/ --pref-weight 1.0 --out models/pref
"""

from __future__ import annotations

import argparse
from pathlib import Path

from apex.cli import EXIT_OK, dataclass_flags, from_args, guarded
from apex.commands.common import data_flags, read_table
from apex.training.config import TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``apex`` parser."""
    p = subparsers.add_parser("train", help="train heads on engagement shards (+ votes)")
    data_flags(p)
    p.add_argument("--out", type=Path, required=True, help="directory to save the model in")
    dataclass_flags(p, TrainConfig)
    p.set_defaults(func=guarded(cmd_train))


def cmd_train(args: argparse.Namespace) -> int:
    """Train on ``--data`` (+ ``--votes``), save to ``--out``, print the validation report."""
    from apex.evaluation.metrics import evaluate_model, format_table
    from apex.training.battles import battles_from_votes, time_split
    from apex.training.data import load_engagement
    from apex.training.refit import train_with_votes
    from apex.training.saving import model_metadata, save_trained, write_card

    config = from_args(TrainConfig, args)
    data, transform = load_engagement(args.data, mode=config.mode, ratings=read_table(args.ratings))
    votes = read_table(args.votes)
    fit = held = None
    if votes is not None:
        fit, held = time_split(battles_from_votes(votes, data.index_of()))  # latest 20 % held out
    # early stopping watches the latest training votes, never the held-out ones reported below
    result = train_with_votes(data, config, fit)
    report = evaluate_model(result.model, data, battles=held, use_preference=config.pref_weight > 0)
    meta = model_metadata(result, data, transform, metrics=report, version=args.out.name)
    save_trained(result, args.out, meta)
    write_card(
        args.out, title=f"APEX heads {args.out.name}", metrics={"model": report}, decision=None
    )
    print(format_table({args.out.name: report}))
    print(f"saved {args.out} (best epoch {result.best_epoch})")
    return EXIT_OK

"""``apex eval arena``: the paper's out-of-distribution experiment on Music Arena battles.

Examples::

    apex eval arena                                   # the Hub release (needs the network)
    apex eval arena --data ~/music-arena --model auto # a local copy, the published APEX model
    apex eval arena --data var/arena-demo --model demo --svm fixed --out report.json

Every released clip of the battles is scored once (embeddings are cached), then
:func:`apex.sources.arena_eval.evaluate_arena` fits the cross-validated classifiers. Wired into
``apex eval`` (apex/commands/train.py) as the ``arena`` subcommand through :func:`add_arguments`
and :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arena evaluation's flags to ``parser``."""
    parser.add_argument(
        "--data",
        default="music-arena",
        help="folder in Music Arena's layout (battle_data/, audio_files/), 'music-arena' (the "
        "Hub release) or another Hub dataset id in that layout (default: %(default)s)",
    )
    parser.add_argument(
        "--batch",
        action="append",
        default=[],
        help="only this batch folder, e.g. 02-2025SEP (repeatable; default: all)",
    )
    parser.add_argument(
        "--model", default="auto", help="auto, demo, a model folder, a .pt file or a Hub id"
    )
    parser.add_argument("--encoder", default=None, help="encoder override (default: the model's)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--features",
        choices=("engagement", "all"),
        default="engagement",
        help="engagement: the paper's final feature set; all: the seven scores",
    )
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--svm",
        choices=("grid", "fixed", "off"),
        default="grid",
        help="grid: the paper's nested grid search (slow); fixed: one RBF SVM; off",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")


def score_clips(scorer: Any, clips: Any, root: Path) -> tuple[dict[str, Any], list[tuple]]:
    """Score every clip with audio on disk; returns ``{clip_id: ScoreResult}`` and failures."""
    results, failed = {}, []
    for clip in clips.itertuples():
        if not clip.has_audio:
            failed.append((clip.clip_id, "audio file not on disk"))
            continue
        try:
            results[clip.clip_id] = scorer.score(root / clip.file_name)[0]
        except Exception as exc:  # one bad clip must not end the evaluation; it is reported
            failed.append((clip.clip_id, f"{type(exc).__name__}: {exc}"))
    return results, failed


def run(args: argparse.Namespace) -> int:
    """Load battles, score clips, run the protocol, print the table; exit 1 on a usage error."""
    import numpy as np
    import pandas as pd

    from apex.scorer import load_scorer
    from apex.settings import Settings
    from apex.sources.arena_eval import ArenaEvalError, evaluate_arena, format_report
    from apex.sources.music_arena import MusicArenaError, read_release, resolve

    settings = Settings.from_env()
    try:
        root = resolve(
            args.data, cache_dir=settings.cache_dir / "hub-datasets", batches=tuple(args.batch)
        )
        release = read_release(root)
        battles = release.battles
        if args.batch:
            battles = battles[battles["batch"].isin(args.batch)]
        scorer = load_scorer(args.model, encoder=args.encoder, device=args.device)
        results, failed = score_clips(scorer, release.clips(), release.root)
        predictions = pd.DataFrame({cid: r.scores for cid, r in results.items()}).T
        p_compare = np.array(
            [
                scorer.compare(results[a], results[b]) if a in results and b in results else np.nan
                for a, b in zip(battles["clip_a"], battles["clip_b"], strict=True)
            ]
        )
        report = evaluate_arena(
            battles,
            predictions,
            p_compare=p_compare,
            feature_set=args.features,
            folds=args.folds,
            seed=args.seed,
            svm=args.svm,
        )
    except (MusicArenaError, ArenaEvalError, ValueError, OSError) as err:
        print(f"apex eval arena: {err}", file=sys.stderr)
        return 1
    info = scorer.info()
    report |= {
        "data": str(release.root),
        "model": {k: info.get(k) for k in ("model_id", "version", "encoder_id", "is_demo")},
        "skipped_records": release.skipped,
        "unscored_clips": failed,
    }
    print(format_report(report))
    if info.get("is_demo"):
        print("note: the offline demo model answered; these numbers say nothing about APEX.")
    if release.skipped or failed:
        print(f"{len(release.skipped)} records skipped, {len(failed)} clips unscored (see JSON)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=_jsonable), encoding="utf-8")
        print(f"report -> {args.out}")
    return 0


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)

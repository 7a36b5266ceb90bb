"""``apex eval arena``: the paper's out-of-distribution experiment on Music Arena battles.

Examples::

    apex eval arena                                   # the Hub release (needs the network)
    apex eval arena --data ~/music-arena --model auto # a local copy, the published APEX model
    apex eval arena --data var/arena-demo --model demo --svm fixed --out report.json
    apex eval arena --data var/arena-demo --model demo --model var/models/v0002-... --json

Every released clip of the battles is scored once per model (embeddings are cached), then
:func:`apex.sources.arena_eval.evaluate_arena` checks orientation, fits the cross-validated
classifiers under the paper's and the grouped folds, and adds intervals and p-values. Each
``--model`` (repeatable: any registry version directory, ``demo``, ``auto``, a ``.pt`` or a Hub
id) gets the same report, ``Scorer.compare`` included, so refits are judged alike. Wired into
``apex eval`` (apex/commands/train.py) as the ``arena`` subcommand through :func:`add_arguments`
and :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from apex.training.arena_cv import FOLD_SCHEMES


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
        "--model",
        action="append",
        default=[],
        help="auto, demo, a model folder (e.g. a registry version), a .pt file or a Hub id; "
        "repeat to report several models on the same battles (default: auto)",
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
    parser.add_argument(
        "--schemes",
        default=",".join(FOLD_SCHEMES),
        help="comma-separated fold schemes: paper (the published, label-stratified folds), "
        "prompt, pair, prompt+pair (grouped) (default: %(default)s)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="resamples per interval (default: %(default)s)"
    )
    parser.add_argument(
        "--permutations",
        type=int,
        default=1000,
        help="permutations per p-value; 0 turns the test off (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--svm",
        choices=("grid", "fixed", "off"),
        default="grid",
        help="grid: the paper's nested grid search (slow); fixed: one RBF SVM; off",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument(
        "--json", action="store_true", help="print the whole JSON report instead of the tables"
    )


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
    """Load battles, score clips per model, run the protocol, print it; exit 1 on a usage error."""
    from apex.scorer import load_scorer
    from apex.settings import Settings
    from apex.sources.arena_eval import ArenaEvalError
    from apex.sources.arena_report import format_report
    from apex.sources.music_arena import MusicArenaError, read_release, resolve

    settings = Settings.from_env()
    schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    runs = []
    try:
        if args.bootstrap < 1 or args.permutations < 0:
            raise ArenaEvalError("--bootstrap must be >= 1 and --permutations >= 0")
        root = resolve(
            args.data, cache_dir=settings.cache_dir / "hub-datasets", batches=tuple(args.batch)
        )
        release = read_release(root)
        battles = release.battles
        if args.batch:
            battles = battles[battles["batch"].isin(args.batch)]
        for spec in args.model or ["auto"]:
            scorer = load_scorer(spec, encoder=args.encoder, device=args.device)
            runs.append(_evaluate_one(args, spec, scorer, release, battles, schemes))
    except (MusicArenaError, ArenaEvalError, ValueError, OSError) as err:
        print(f"apex eval arena: {err}", file=sys.stderr)
        return 1
    out = {"data": str(release.root), "skipped_records": release.skipped, "runs": runs}
    text = json.dumps(_strict(out), indent=2, default=_jsonable, allow_nan=False)
    if args.json:
        print(text)
    else:
        for report in runs:
            print(format_report(report), end="\n\n")
        if release.skipped or any(r["unscored_clips"] for r in runs):
            print(f"{len(release.skipped)} records skipped; unscored clips listed in the JSON")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"report -> {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _evaluate_one(
    args: argparse.Namespace,
    spec: str,
    scorer: Any,
    release: Any,
    battles: Any,
    schemes: tuple[str, ...],
) -> dict[str, Any]:
    """One model's report: score the clips, compare each battle's pair, run the protocol."""
    import numpy as np
    import pandas as pd

    from apex.sources.arena_eval import evaluate_arena

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
        schemes=schemes,
        folds=args.folds,
        seed=args.seed,
        svm=args.svm,
        n_boot=args.bootstrap,
        n_perm=args.permutations,
    )
    info = scorer.info()
    keys = ("model_id", "version", "encoder_id", "is_demo")
    return report | {
        "model": {"spec": spec, **{k: info.get(k) for k in keys}},
        "unscored_clips": failed,
    }


def _strict(value: Any) -> Any:
    """``value`` with NaN/inf floats as None, so the report is strict JSON (``jq``, browsers)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)

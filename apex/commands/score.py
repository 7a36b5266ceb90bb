"""``apex score FILE...``: the seven APEX scores of audio files, as a table or JSON lines::

apex score --json *.flac > scores.jsonl
apex score --model amaai-lab/apex --encoder m-a-p/MERT-v1-95M --precision reference song.wav
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from apex.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, dataclass_flags, fail
from apex.settings import Settings, SettingsError
from apex.tasks import SCORE_NAMES, SCORE_RANGES

#: Files longer than this get a progress line on stderr while they are encoded, seconds.
PROGRESS_AFTER_S = 60.0
_COLUMN, _NAME = 10, 24
#: :class:`~apex.settings.Settings` fields the command takes as flags (default: the env value).
_SETTINGS = ("model", "encoder", "precision", "device", "max_audio_s")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``score`` to the ``apex`` parser."""
    p = subparsers.add_parser(
        "score",
        help="score audio files (seven APEX scores)",
        description="Score audio files with APEX: a table (default) or JSON lines. Bad files are "
        "reported on stderr; exit code 1 if any failed, 2 if the model cannot be loaded.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="audio files to score")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead")
    dataclass_flags(
        p,
        Settings,
        only=_SETTINGS,
        overrides=dict.fromkeys(_SETTINGS),
        choices={"precision": ("fast", "reference")},
        help={
            "model": "auto | demo | model dir | .pt | Hub id",
            "encoder": "auto | fallback | MERT dir | Hub id",
            "device": "auto | cpu | cuda | cuda:N",
            "max_audio_s": "longest accepted file, s",
        },
    )
    p.set_defaults(func=cmd_score)


def _settings(args: argparse.Namespace) -> Settings:
    """``Settings.from_env`` with the flags that were given (None: the ``APEX_*`` value)."""
    overrides = {key: value for key in _SETTINGS if (value := getattr(args, key)) is not None}
    return Settings.from_env(**overrides)


def cmd_score(args: argparse.Namespace) -> int:
    """Score ``args.files``; return 0 if all were scored, 1 if any failed, 2 if none could be."""
    from apex.audio import AudioError, load_audio
    from apex.checkpoints import CheckpointError
    from apex.encoders import EncoderUnavailable
    from apex.loader import load_scorer

    try:
        settings = _settings(args)
        scorer = load_scorer(
            settings.model,
            encoder=settings.encoder,
            device=settings.device,
            precision=settings.precision,
            settings=settings,
        )
    except (SettingsError, CheckpointError, EncoderUnavailable, ValueError) as err:
        return fail(args, f"cannot load the model: {err}", EXIT_USAGE)
    for notice in scorer.notices:
        _note(f"note: {notice}")
    info = scorer.info()
    kind = "DEMO model" if info["is_demo"] else f"{info['kind']} model"
    fallback = " (fallback descriptors)" if info["encoder_is_fallback"] else ""
    _note(
        f"{kind} {info['model_id']} (version {info['version']}) on encoder "
        f"{info['encoder_id']}{fallback}"
    )
    failed = 0
    if not args.json:
        _print_header()
    for index, path in enumerate(args.files, 1):
        try:
            audio = load_audio(
                path, sample_rate=scorer.encoder.sample_rate, max_seconds=settings.max_audio_s
            )
            started = time.perf_counter()
            if audio.duration_s > PROGRESS_AFTER_S:
                seconds = f"{audio.duration_s:.0f} s"
                _note(f"[{index}/{len(args.files)}] {path.name}: encoding {seconds} of audio...")
            result = scorer.score([audio])[0]
        except (AudioError, OSError) as err:
            failed += 1
            where = "" if path.name in str(err) else f"{path}: "
            fail(args, f"{where}{err}", EXIT_FAILED)
            continue
        if audio.duration_s > PROGRESS_AFTER_S:
            _note(f"{path.name}: done in {time.perf_counter() - started:.1f} s")
        for warning in result.warnings:
            if warning not in scorer.notices:  # the demo notice among them: said once above
                _note(f"{path.name}: warning: {warning}")
        payload = {"file": str(path), **result.to_dict()}
        if args.json:
            print(json.dumps(payload, sort_keys=True), flush=True)
        else:
            _print_row(path.name, payload)
    if failed:
        _note(f"{failed} of {len(args.files)} file(s) failed.")
    return EXIT_FAILED if failed else EXIT_OK


def _note(text: str) -> None:
    print(f"apex score: {text}", file=sys.stderr, flush=True)


def _print_header() -> None:
    names = [n.removeprefix("score_") for n in SCORE_NAMES]
    scales = [f"{SCORE_RANGES[n][0]:g}-{SCORE_RANGES[n][1]:g}" for n in SCORE_NAMES]
    for label, seconds, cells in (("file", "seconds", names), ("", "", scales)):
        print(f"{label:<{_NAME}} {seconds:>8} " + " ".join(f"{c:>{_COLUMN}}" for c in cells))


def _print_row(name: str, payload: dict[str, Any]) -> None:
    cells = []
    for score in SCORE_NAMES:
        value = payload["scores"].get(score)
        if value is None:
            cells.append(f"{'-':>{_COLUMN}}")
            continue
        digits = 1 if SCORE_RANGES[score][1] > 5 else 2
        text = f"{value:.{digits}f}"
        if score in payload["uncertainty"]:
            text += f"±{payload['uncertainty'][score]:.{digits}f}"
        cells.append(f"{text:>{_COLUMN}}")
    label = name if len(name) <= _NAME else name[: _NAME - 3] + "..."
    print(f"{label:<{_NAME}} {payload['duration_s']:>8.1f} " + " ".join(cells), flush=True)

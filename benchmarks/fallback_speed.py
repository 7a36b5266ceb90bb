"""Fallback encoder speed on demo-corpus clips, against the demo model's 60 s first-use budget.

Run: ``.venv/bin/python benchmarks/fallback_speed.py [--clips 16] [--rounds 3]``.

The offline demo model (``apex.demo.model``) encodes its fit subset of demo clips with
:class:`apex.encoders.FallbackEncoder` on first use and must be ready within 60 s, so the figure
that matters is how many seconds of audio the encoder describes per second on one CPU core
(x real time) and hence how many demo clips fit in the budget. It measures, in one run and
interleaved round by round (the machine is shared; each path gets its best round):

(a) the current encoder on one thread and on torch's default thread count;
(b) the baseline: the float64 per-descriptor implementation (descriptor version 1) read from git
    history (``--baseline-rev``), on one thread; skipped with a note when git or the revision is
    not available.

It prints x real time, ms per clip, the speed-up over the baseline, and the clips (of the mean
demo duration) that one core encodes in 60 s against the demo model's fit subset
(``DEMO_CLIPS``, the whole default corpus), then one JSON line of all figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from apex.audio import Audio, load_audio
from apex.demo import build_demo_corpus, load_metadata
from apex.encoders import FallbackEncoder

#: Clips the demo model is fitted on (the default demo corpus, whole).
DEMO_CLIPS = 480

BUDGET_S = 60.0
TARGET_X_REAL_TIME = 150.0
BASELINE_REV = "538104744ff6ab6db3e811f8248d3c537b1cefcf"  # descriptor v1 (float64), 0.5 s/clip
_ROOT = Path(__file__).resolve().parents[1]


def baseline_module(rev: str, tmp: Path) -> ModuleType | None:
    """The fallback module as of ``rev`` (imported from a temporary file), or None."""
    try:
        source = subprocess.run(
            ["git", "-C", str(_ROOT), "show", f"{rev}:apex/encoders/fallback.py"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"baseline skipped: cannot read {rev[:12]} from git ({error})", file=sys.stderr)
        return None
    path = tmp / "fallback_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fallback_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seconds_per_round(encoder, audios: list[Audio], threads: int) -> float:
    """Wall seconds to encode every clip once with ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        for audio in audios:
            encoder.encode(audio)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=16, help="demo clips timed per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of (b)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_demo_corpus(Path(tmp) / "demo", n_clips=max(args.clips, 8))
        meta = load_metadata(corpus)
        audios = [load_audio(corpus / name) for name in meta["file_name"][: args.clips]]
        baseline = baseline_module(args.baseline_rev, Path(tmp))
        current = FallbackEncoder()
        paths = {"current_1t": (current, 1), "current_default": (current, default_threads)}
        if baseline is not None:
            paths["baseline_1t"] = (baseline.FallbackEncoder(), 1)
        for encoder, _ in paths.values():
            encoder.encode(audios[0])  # warm-up (lazy imports, allocator), not timed
        best = {name: float("inf") for name in paths}
        for _ in range(args.rounds):
            for name, (encoder, threads) in paths.items():
                best[name] = min(best[name], seconds_per_round(encoder, audios, threads))
    audio_s = sum(a.duration_s for a in audios)
    clip_s = audio_s / len(audios)
    x_rt = {name: audio_s / seconds for name, seconds in best.items()}
    speedup = best["baseline_1t"] / best["current_1t"] if baseline is not None else None
    clips_in_budget = int(BUDGET_S * x_rt["current_1t"] / clip_s)
    fit_s = DEMO_CLIPS * clip_s / x_rt["current_1t"]
    corpus_s = 480 * clip_s / x_rt["current_1t"]
    for name, value in x_rt.items():
        print(f"{name:16s}: {value:7.1f}x real time, {best[name] / len(audios) * 1e3:6.1f} ms/clip")
    if speedup is not None:
        print(f"speed-up        : {speedup:.2f}x over descriptor v1 (target >= 5x), one thread")
    print(
        f"budget          : {clips_in_budget} clips of {clip_s:.1f} s in {BUDGET_S:.0f} s on one "
        f"core; the demo model's {DEMO_CLIPS} clips take {fit_s:.1f} s, all 480 {corpus_s:.1f} s"
    )
    figures = {
        "benchmark": "fallback_speed",
        "clips": len(audios),
        "mean_clip_s": round(clip_s, 2),
        "default_threads": default_threads,
        **{f"{name}_x_real_time": round(value, 1) for name, value in x_rt.items()},
        **{f"{name}_ms_per_clip": round(s / len(audios) * 1e3, 2) for name, s in best.items()},
        "speedup_vs_v1": None if speedup is None else round(speedup, 2),
        "baseline_rev": args.baseline_rev[:12] if baseline is not None else None,
        "budget_s": BUDGET_S,
        "clips_in_budget_1t": clips_in_budget,
        "fit_subset_clips": DEMO_CLIPS,
        "fit_subset_encode_s_1t": round(fit_s, 2),
        "corpus_480_encode_s_1t": round(corpus_s, 2),
        "targets_met": x_rt["current_1t"] >= TARGET_X_REAL_TIME
        and (speedup is None or speedup >= 5.0),
        "load_avg_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

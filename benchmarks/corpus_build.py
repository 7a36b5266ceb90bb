"""Demo corpus build time: the default 480-clip corpus, built from scratch, against its 60 s budget.

Usage: ``python benchmarks/corpus_build.py [--clips N]``. Reports wall-clock and CPU seconds (the
machine is shared, so CPU seconds are the steadier figure), the cached re-call time, and the ratio
of a cold build to the budget. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from apex.demo import build_demo_corpus, load_metadata

BUDGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=480)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        wall, cpu = time.perf_counter(), time.process_time()
        build_demo_corpus(out, n_clips=args.clips)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cached = time.perf_counter()
        build_demo_corpus(out, n_clips=args.clips)
        cached = time.perf_counter() - cached
        meta = load_metadata(out)
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    audio_s = float(meta["duration_s"].sum())
    print(f"built {len(meta)} clips ({audio_s / 60:.1f} min of audio, {size_mb:.0f} MB)")
    print(f"cold build: {wall:.1f} s wall, {cpu:.1f} s CPU (budget {BUDGET_S:.0f} s)")
    print(f"cached call: {cached * 1000:.1f} ms")
    figures = {
        "benchmark": "corpus_build",
        "clips": len(meta),
        "audio_minutes": round(audio_s / 60, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cached_ms": round(cached * 1000, 2),
        "budget_s": BUDGET_S,
        "wall_over_budget": round(wall / BUDGET_S, 3),
        "within_budget": wall <= BUDGET_S,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""First-use build of the offline demo model against its 60 s budget.

What a fresh offline start pays before the first score: the demo corpus (timed separately; it has
its own benchmark), then the demo heads: fallback-encoder embeddings of the fitting clips (cold
cache) and the fit. A second call must be a cache hit.
Usage: ``python benchmarks/demo_model_build.py``. Ends with one JSON line.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from apex.demo import ensure_demo_corpus
from apex.demo.model import ensure_demo_model
from apex.settings import Settings

BUDGET_S = 60.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({}, data_dir=Path(tmp))
        started = time.perf_counter()
        ensure_demo_corpus(settings)
        corpus_s = time.perf_counter() - started
        wall, cpu = time.perf_counter(), time.process_time()
        model_dir = ensure_demo_model(settings)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        again = time.perf_counter()
        ensure_demo_model(settings)
        again = time.perf_counter() - again
        metrics = json.loads((model_dir / "metadata.json").read_text())["metrics"]
    print(f"demo corpus ({settings.demo_clips} clips): {corpus_s:.1f} s")
    print(f"demo model ({settings.demo_clips} clips): {wall:.1f} s wall, {cpu:.1f} s CPU")
    verdict = "met" if wall <= BUDGET_S else "MISSED"
    print(f"budget {BUDGET_S:.0f} s: {verdict}; cached call {again:.3f} s")
    print(f"held-out metrics: {json.dumps(metrics)}")
    print(
        json.dumps(
            {
                "benchmark": "demo_model_build",
                "corpus_clips": settings.demo_clips,
                "corpus_s": round(corpus_s, 2),
                "fit_clips": settings.demo_clips,
                "model_wall_s": round(wall, 2),
                "model_cpu_s": round(cpu, 2),
                "cached_call_s": round(again, 4),
                "budget_s": BUDGET_S,
                "model_wall_over_budget": round(wall / BUDGET_S, 3),
                "within_budget": wall <= BUDGET_S,
                "metrics": metrics,
            }
        )
    )


if __name__ == "__main__":
    main()

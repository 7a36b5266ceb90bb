"""Cold starts in fresh processes: no start-up thread sees a half-imported heavy module.

The UI thread imports torch (through the tabs) while the build thread renders the demo corpus
with scipy, whose array-API check reads ``sys.modules["torch"].Tensor``: with torch half
imported there, the pool failed at random and the arena stayed dead. Each start here is a new
interpreter (a module is imported once per process), on a fresh data directory, with the real
store, pool and arena builders building a small demo corpus while the UI is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

#: Builds the real store/pool/arena in the background while the UI is built (as app.py does),
#: then prints each service's state as JSON.
COLD_START = """
import json, sys
from apex.settings import Settings
from webui import build_ui
from webui.services import Services, default_builders
settings = Settings.from_env({}, data_dir=sys.argv[1], pool="demo", demo_clips=16, refit_hours=0)
builders = {k: v for k, v in default_builders().items() if k in ("store", "pool", "arena")}
services = Services(settings, builders=builders).start()
build_ui(services)
services.wait(300)
print(json.dumps({k: [v.state, v.detail] for k, v in services.status().items()}))
services.close()
"""

#: A builder that records, on the build thread, whether torch and scipy.signal are whole.
PROBE = """
import json, sys
from apex.settings import Settings
from webui.services import Services
seen = {}
def probe(settings, built):
    torch = sys.modules.get("torch")
    seen["torch_whole"] = torch is not None and hasattr(torch, "Tensor")
    seen["scipy_signal"] = "scipy.signal" in sys.modules
    return "OK"
assert "torch" not in sys.modules
services = Services(Settings.from_env({}, data_dir=sys.argv[1]), builders={"pool": probe})
services.start().wait(60)
print(json.dumps(seen))
"""


def _run(script: str, data_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_heavy_modules_are_whole_before_the_build_thread_runs(tmp_path: Path) -> None:
    assert _run(PROBE, tmp_path / "data") == {"torch_whole": True, "scipy_signal": True}


def test_cold_starts_building_the_demo_pool_open_the_arena_every_time(tmp_path: Path) -> None:
    starts = int(os.environ.get("APEX_TEST_COLD_STARTS", "20"))
    # Two at a time: the starts compete for the CPU, as a Space's threads do, and the run is
    # half as long.
    with ThreadPoolExecutor(2) as pool:
        states = list(pool.map(lambda i: _run(COLD_START, tmp_path / f"d{i}"), range(starts)))
    failed = [s for s in states if any(state != "ready" for state, _ in s.values())]
    assert not failed, failed
    assert len(states) == starts

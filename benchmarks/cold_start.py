"""Cold start: how soon a fresh app serves the page, ``/score`` and the first battle, by pool size.

Run: ``.venv/bin/python benchmarks/cold_start.py [--sizes 40,400] [--full-sizes 40]
[--baseline-sizes 40] [--baseline-rev REV]``.

Each run starts ``app.py`` in a subprocess with a fresh data directory, as a new Space would
start: a MERT-95M-shaped encoder (random weights, saved in MERT-v1-95M's Hub file layout),
reference-format heads (the GitHub ``.pt`` dict, random weights) and an
audiofolder pool of N generated 30 s clips (four systems, shared prompts). Nothing is
downloaded (``HF_HUB_OFFLINE=1``). Measured from the process start:

- ``listen_s``: the page answers HTTP 200;
- ``first_score_s``: the first successful ``/score`` of a 30 s song (retried while it fails);
- ``first_battle_s``: the first successful ``/new_battle`` (retried while it fails);
- ``pool_scored_s``: every pool clip has a cached score (``<data>/cache/pool/<model>/``), for
  the sizes in ``--full-sizes``; throughput is ``clips / (pool_scored_s - scorer_ready_s)``,
  ``scorer_ready_s`` read from the app's "APEX scorer ready" log line;
- ``peak_rss_gb``: the app process's peak resident memory (``VmHWM``).

The baseline is the blocking start (every clip scored before the arena opens), the app as it
was at ``--baseline-rev`` (checked out from git into a temporary folder), measured in the same
run with the same files. On a small CPU the baseline's first battle waits for the whole pool,
so by default it runs only on the 40-clip pool. Targets: first battle <= 30 s at every size,
whole-pool throughput no worse than the baseline's, peak RSS <= 2.5 GB. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "45e7d5a"  # the blocking start: ClipPool._build scores every clip first
RATE = 24_000
SYSTEMS = ("system-a", "system-b", "system-c", "system-d")
TARGET_FIRST_BATTLE_S, TARGET_RSS_GB = 30.0, 2.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- fixtures
def write_encoder(out: Path) -> Path:
    """A MERT-95M-shaped random encoder in MERT-v1-95M's Hub layout: ``config.json``
    (``model_type: mert_model``), ``preprocessor_config.json`` (no normalisation, 24 kHz) and a
    pickled ``pytorch_model.bin`` with the legacy weight-norm names, read by the app's own
    ``MertEncoder.from_pretrained``."""
    import torch

    from apex.encoders.hubert import (
        build_hubert,
        config_json,
        legacy_state_dict,
        mert_95m_config,
        write_preprocessor_config,
    )

    out.mkdir(parents=True, exist_ok=True)
    config = mert_95m_config()
    torch.save(legacy_state_dict(build_hubert(config, seed=0)), out / "pytorch_model.bin")
    raw = config_json(config)
    raw.update(model_type="mert_model", architectures=["MERTModel"], sample_rate=RATE)
    (out / "config.json").write_text(json.dumps(raw, indent=2, default=list))
    write_preprocessor_config(out, do_normalize=False)
    return out


def write_heads(path: Path) -> Path:
    """Random heads in the GitHub reference's ``.pt`` layout (task full, two shared layers)."""
    import torch

    from apex.heads import ReferenceHeads

    torch.manual_seed(0)
    state = ReferenceHeads(task="full", shared=2, mode="song").state_dict()
    torch.save({"model_state": state, "task": "full", "shared": 2, "mode": "song"}, path)
    return path


def song(seconds: float, seed: int) -> np.ndarray:
    """A song-like signal: chords changing every 2 s, pulses, a little noise; float32 mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE), dtype=np.float32) / RATE
    roots = 110.0 * 2 ** (rng.integers(0, 12, size=int(seconds // 2) + 1) / 12)
    root = roots[(t // 2).astype(int)].astype(np.float32)
    wave = np.zeros_like(t)
    for i, ratio in enumerate((1.0, 1.25, 1.5)):
        wave += np.sin(2 * np.pi * root * ratio * t) / (i + 1)
    wave *= 0.6 + 0.4 * (np.mod(t, 0.5) < 0.25)
    wave += 0.02 * rng.standard_normal(t.size).astype(np.float32)
    return (0.25 * wave).astype(np.float32)


def write_pools(root: Path, sizes: list[int], clip_s: float) -> dict[int, Path]:
    """One folder of audio for the largest size; one audiofolder (hard links) per size."""
    import soundfile as sf

    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for k in range(max(sizes)):
        path = audio / f"clip{k:05d}.wav"
        if not path.exists():
            sf.write(path, song(clip_s, seed=k), RATE, subtype="PCM_16")
    pools = {}
    for size in sizes:
        folder = root / f"pool-{size}"
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        lines = ["file_name,system,prompt,is_instrumental"]
        for k in range(size):
            link = folder / "audio" / f"clip{k:05d}.wav"
            if not link.exists():
                os.link(audio / link.name, link)
            lines.append(f"audio/{link.name},{SYSTEMS[k % 4]},prompt {k // 4 % 10},true")
        (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
        pools[size] = folder
    return pools


def baseline_tree(rev: str, out: Path) -> Path | None:
    """The app at ``rev`` extracted from git (None, with a note, when that is impossible)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"baseline skipped: cannot check out {rev} ({error})", file=sys.stderr)
        return None
    return out


# ---------------------------------------------------------------------- one run
def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, ssl_verify=False)


def _until_ok(
    name: str, url: str, args: tuple, t0: float, out: dict, stop: threading.Event
) -> None:
    """Call endpoint ``name`` of the app until it succeeds (one client, a retry every 2 s, so
    the polling itself costs the app little CPU); record seconds since ``t0``."""
    client = _client(url)
    while not stop.is_set():
        try:
            client.predict(*args, api_name=f"/{name}")
        except Exception as error:  # warming up (the baseline raises), or busy
            out.setdefault(f"{name}_errors", []).append(type(error).__name__)
            stop.wait(2.0)
            continue
        out[f"first_{name}_s"] = time.monotonic() - t0
        return


def _scored(data_dir: Path) -> int:
    """Clips with a cached score (any model folder under cache/pool, not the audio checks)."""
    pool = data_dir / "cache" / "pool"
    if not pool.is_dir():
        return 0
    return sum(
        len(list(d.glob("*.json"))) for d in pool.iterdir() if d.is_dir() and d.name != "audio"
    )


def _peak_rss_gb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024**2


def _scorer_ready_s(log: Path, t0_wall: float) -> float | None:
    """Seconds from the start to the app's 'APEX scorer ready in' log line."""
    for line in log.read_text(errors="replace").splitlines():
        if "APEX scorer ready in" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            return stamp - t0_wall
    return None


def run_app(tree: Path, pool: Path, fix: dict, work: Path, *, full: bool, timeout: float) -> dict:
    """Start ``tree/app.py`` cold on ``pool``; measure (see the module docstring)."""
    data, port = work / "data", free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "APEX_DATA_DIR": str(data),
        "APEX_PORT": str(port),
        "APEX_HOST": "127.0.0.1",
        "APEX_POOL": str(pool),
        "APEX_MODEL": str(fix["heads"]),
        "APEX_ENCODER": str(fix["encoder"]),
        "APEX_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    work.mkdir(parents=True, exist_ok=True)
    log = work / "app.log"
    size = sum(1 for _ in (pool / "metadata.csv").open()) - 1
    t0_wall, t0 = time.time(), time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(tree / "app.py")],
        cwd=tree,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url, out, stop = f"http://127.0.0.1:{port}/", {}, threading.Event()
    try:
        deadline = t0 + timeout
        while "listen_s" not in out and time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                out["listen_s"] = time.monotonic() - t0
            except OSError:  # not listening yet
                time.sleep(0.2)
        from gradio_client import handle_file

        threads = [
            threading.Thread(target=_until_ok, args=(name, url, call_args, t0, out, stop))
            for name, call_args in (
                ("score", (handle_file(str(fix["song"])),)),
                ("new_battle", ()),
            )
        ]
        for thread in threads:
            thread.start()
        while time.monotonic() < deadline and proc.poll() is None:
            done = "first_score_s" in out and "first_new_battle_s" in out
            if full and "pool_scored_s" not in out and _scored(data) >= size:
                out["pool_scored_s"] = time.monotonic() - t0
            if done and (not full or "pool_scored_s" in out):
                break
            time.sleep(0.25)
        out["peak_rss_gb"] = _peak_rss_gb(proc.pid) if proc.poll() is None else None
        out["exit_code"] = proc.poll()
    finally:
        stop.set()
        proc.terminate()
        proc.wait(60)
    out["scorer_ready_s"] = _scorer_ready_s(log, t0_wall)
    out["clips"] = size
    if out.get("pool_scored_s") and out.get("scorer_ready_s") is not None:
        out["clips_per_s"] = size / (out["pool_scored_s"] - out["scorer_ready_s"])
    out["first_battle_s"] = out.pop("first_new_battle_s", None)
    for name in ("score", "new_battle"):
        out[f"{name}_retries"] = len(out.pop(f"{name}_errors", []))
    return out


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="40,400", help="pool sizes to start on")
    parser.add_argument("--full-sizes", default="40", help="sizes whose whole pool is awaited")
    parser.add_argument("--baseline-sizes", default="40", help="sizes the baseline runs on")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the baseline")
    parser.add_argument("--clip-s", type=float, default=30.0, help="clip length, seconds")
    parser.add_argument("--timeout", type=float, default=900.0, help="per run, seconds")
    parser.add_argument("--work", type=Path, default=None, help="keep files here (default: temp)")
    args = parser.parse_args()
    parse = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    sizes, full, base_sizes = parse(args.sizes), parse(args.full_sizes), parse(args.baseline_sizes)
    work = args.work or Path(tempfile.mkdtemp(prefix="cold-start-"))
    print(f"work folder {work}; generating fixtures", flush=True)
    fix = {
        "encoder": write_encoder(work / "mert-95m-random"),
        "heads": write_heads(work / "best_model.pt"),
    }
    import soundfile as sf

    fix["song"] = work / "request.wav"
    sf.write(fix["song"], song(30.0, seed=10_000), RATE, subtype="PCM_16")
    pools = write_pools(work / "pools", sorted(set(sizes + base_sizes)), args.clip_s)
    old = baseline_tree(args.baseline_rev, work / "baseline") if base_sizes else None
    runs: dict[str, dict] = {}
    plan = [("baseline", n) for n in base_sizes if old] + [("new", n) for n in sizes]
    for kind, size in plan:
        tree = old if kind == "baseline" else ROOT
        name = f"{kind}-{size}"
        print(f"run {name} ...", flush=True)
        runs[name] = run_app(
            tree, pools[size], fix, work / name, full=size in full, timeout=args.timeout
        )
        print(f"  {name}: {json.dumps(runs[name])}", flush=True)
    if args.work is None:  # our own temporary folder: nothing of it is kept
        shutil.rmtree(work, ignore_errors=True)
    report(runs, sizes, args)


def report(runs: dict[str, dict], sizes: list[int], args: argparse.Namespace) -> None:
    """Print the comparison and the one JSON line."""
    figures: dict[str, object] = {"benchmark": "cold_start", "clip_s": args.clip_s}
    figures["baseline_rev"] = args.baseline_rev
    figures["cpus"] = os.cpu_count()
    figures["loadavg_1m"] = round(os.getloadavg()[0], 2)
    for name, run in runs.items():
        for key in ("listen_s", "first_score_s", "first_battle_s", "pool_scored_s", "clips_per_s"):
            if run.get(key) is not None:
                figures[f"{name}.{key}"] = round(run[key], 3)
        figures[f"{name}.peak_rss_gb"] = run.get("peak_rss_gb") and round(run["peak_rss_gb"], 3)
    for size in sizes:
        new, base = runs.get(f"new-{size}", {}), runs.get(f"baseline-{size}", {})
        if new.get("first_battle_s") and base.get("first_battle_s"):
            ratio = base["first_battle_s"] / new["first_battle_s"]
            figures[f"first_battle_speedup_{size}"] = round(ratio, 2)
            print(f"first battle, {size} clips: {ratio:.1f}x sooner than the blocking start")
        if new.get("clips_per_s") and base.get("clips_per_s"):
            ratio = new["clips_per_s"] / base["clips_per_s"]
            figures[f"throughput_ratio_{size}"] = round(ratio, 3)
            print(f"whole-pool scoring, {size} clips: {ratio:.2f}x the baseline's clips/s")
    battles = [runs.get(f"new-{n}", {}).get("first_battle_s") for n in sizes]
    rss = [r.get("peak_rss_gb") or 0.0 for k, r in runs.items() if k.startswith("new-")]
    ratios = [v for k, v in figures.items() if k.startswith("throughput_ratio_")]
    figures["targets_met"] = {
        "first_battle_le_30s": all(b is not None and b <= TARGET_FIRST_BATTLE_S for b in battles),
        "throughput_not_worse": bool(ratios) and all(r >= 1.0 for r in ratios),
        "peak_rss_le_2_5gb": bool(rss) and max(rss) <= TARGET_RSS_GB,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

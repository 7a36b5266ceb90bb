"""The app on an empty vote store and on one holding 100,000 votes (a Space after some months).

For each store, ``python app.py`` is started in a subprocess (production wiring, offline demo
model, the 48-clip demo corpus as pool, ``APEX_MIN_LISTEN_S=0``, no rate limit), and measured:

- ``first_battle_s``: seconds from the process start to the first ``/new_battle`` that succeeds;
- ``/vote`` latency p50/p99 and the slowest vote, with ``--voters`` concurrent ``gradio_client``
  voters (each a process of its own) doing full battles for ``--seconds``;
- ``/leaderboard`` seconds for the plain, the flagged-included and the style-controlled view
  (the slowest of three calls each, read after the voting);
- ``peak_rss_gb``: the app process's peak resident memory (``VmHWM``), and its child processes'
  (the board worker) apart.

The demo corpus and model are built once and copied into both data directories, so both starts
do the same work except for the store. The big store is filled with simulated votes of the demo
systems (with clip length and loudness, so the style-controlled fit has its covariates; 2% carry
a flag). Ratios are big / empty, measured in the same run. Targets at 100,000 votes: vote p99
<= 1.5x empty, no vote over 1 s, every leaderboard view under 1 s, the first battle within 30 s,
peak memory within 1.3x. Ends with one JSON line.

    python benchmarks/big_store.py [--votes 100000] [--voters 6] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from arena_load import free_port, make_client, process_cpu_s  # noqa: E402

from apex.tasks import PREFERENCES, SIDES  # noqa: E402

VIEWS = {"plain": {}, "flagged": {"include_flagged": True}, "style": {"style_control": True}}


def fill_store(path: Path, votes: int, seed: int = 0) -> float:
    """``votes`` simulated votes of the demo systems into a new store; returns seconds taken."""
    from annotation.store import SQLiteVoteStore, VoteRecord
    from apex.demo.systems import SYSTEMS

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    names = [s.name for s in SYSTEMS]
    strength = dict(zip(names, rng.normal(0.0, 1.0, len(names)), strict=True))
    now = time.time() - votes * 60.0  # a vote a minute, ending now
    store = SQLiteVoteStore(path)
    store._con.execute("PRAGMA synchronous = OFF")  # the fill only: not what is measured
    for i in range(votes):
        a, b = rng.choice(names, 2, replace=False)
        p_a = 1.0 / (1.0 + np.exp(strength[b] - strength[a]))
        pref = "A" if rng.random() < p_a else "B"
        if rng.random() < 0.1:
            pref = ("TIE", "BOTH_BAD")[i % 2]
        t = now + 60.0 * i
        store.insert_vote(
            VoteRecord(
                vote_id=f"sim-{i}", battle_uuid=f"sim-b{i}", timestamp=t,
                user_pseudonym=f"voter-{i % 5000}", session_pseudonym=f"session-{i % 20000}",
                prompt=f"prompt {i % 200}", is_instrumental=bool(i % 2),
                system_a=str(a), system_b=str(b), clip_a=f"{a}-{i % 40}", clip_b=f"{b}-{i % 40}",
                audio_a="a.wav", audio_b="b.wav", preference=pref,
                listen_data_a=[[8.0, t - 9.0]], listen_data_b=[[8.0, t - 1.0]],
                total_listening_time_a=8.0, total_listening_time_b=8.0,
                apex_p_a=float(p_a), apex_model_version="sim@1",
                loudness_a=float(rng.normal(-14, 3)), loudness_b=float(rng.normal(-14, 3)),
                duration_a=float(rng.uniform(8, 30)), duration_b=float(rng.uniform(8, 30)),
                flags="burst" if rng.random() < 0.02 else "",
            )
        )  # fmt: skip
    store.close()
    return time.perf_counter() - start


def prepare_template(work: Path) -> Path:
    """A data directory holding the built demo corpus and demo model (copied into each run)."""
    from apex.demo import ensure_demo_corpus
    from apex.demo.model import ensure_demo_model
    from apex.settings import Settings

    template = work / "template"
    settings = Settings.from_env({}, data_dir=template, demo_clips=48, pool="demo")
    ensure_demo_corpus(settings)
    ensure_demo_model(settings)
    return template


def _battle(client, rng: random.Random) -> float:
    info, _, _ = client.predict(api_name="/new_battle")
    for side in SIDES:
        client.predict(info["battle_id"], side, 5.0, api_name="/listen")
    start = time.perf_counter()
    client.predict(info["battle_id"], rng.choice(PREFERENCES), api_name="/vote")
    return time.perf_counter() - start


def _voter(url: str, seconds: float, seed: int, barrier, out) -> None:
    client = make_client(url)
    rng = random.Random(seed)
    barrier.wait()
    deadline, latencies, errors = time.monotonic() + seconds, [], []
    while time.monotonic() < deadline:
        try:
            latencies.append(_battle(client, rng))
        except Exception as err:  # counted and reported, not fatal: the others go on
            errors.append(repr(err))
    out.put((latencies, errors))
    client.close()


def vote_phase(url: str, voters: int, seconds: float) -> tuple[list[float], list[str]]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(voters + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_voter, args=(url, seconds, seed, barrier, out))
        for seed in range(voters)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)
    results = [out.get(timeout=seconds + 600) for _ in procs]
    for proc in procs:
        proc.join()
    return [x for lat, _ in results for x in lat], [e for _, errs in results for e in errs]


def _peak_rss_gb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024**2


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the board worker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def run_store(template: Path, work: Path, name: str, votes: int, args) -> dict:
    data = work / name
    shutil.copytree(template, data)
    fill_s = fill_store(data / "votes.sqlite", votes) if votes else 0.0
    port, log = free_port(), (work / f"{name}.log").open("w")
    env = {
        **os.environ,
        "APEX_DATA_DIR": str(data),
        "APEX_PORT": str(port),
        "APEX_HOST": "127.0.0.1",
        "APEX_POOL": "demo",
        "APEX_DEMO_CLIPS": "48",
        "APEX_MIN_LISTEN_S": "0",
        "APEX_RATE_LIMIT_VOTES": "100000000",
        "APEX_RATE_LIMIT_BATTLES": "100000000",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    url = f"http://127.0.0.1:{port}/"
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    try:
        client = None
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with {proc.returncode}; see {log.name}")
            if time.monotonic() - start > 600:
                raise SystemExit("no battle within 600 s")
            try:
                client = client or make_client(url)
                client.predict(api_name="/new_battle")
                break
            except Exception:  # not up yet: the page, or the arena, still starting
                time.sleep(0.25)
        first_battle_s = time.monotonic() - start
        cpu = process_cpu_s(proc.pid)
        latencies, errors = vote_phase(url, args.voters, args.seconds)
        latencies = np.array(latencies)
        cpu = process_cpu_s(proc.pid) - cpu
        boards = {}
        for view, options in VIEWS.items():
            times = []
            for _ in range(3):
                t = time.perf_counter()
                client.predict("all", **options, api_name="/leaderboard")
                times.append(time.perf_counter() - t)
            boards[view] = round(max(times), 3)
        peak, workers = _peak_rss_gb(proc.pid), sum(map(_peak_rss_gb, _children(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    return {
        "votes_stored": votes,
        "fill_s": round(fill_s, 1),
        "first_battle_s": round(first_battle_s, 2),
        "votes_cast": int(latencies.size),
        "failed_battles": len(errors),
        "first_error": errors[0][:200] if errors else None,
        "vote_p50_s": round(float(np.percentile(latencies, 50)), 4),
        "vote_p99_s": round(float(np.percentile(latencies, 99)), 4),
        "vote_max_s": round(float(latencies.max()), 4),
        "server_cpu_s": round(cpu, 1),
        "leaderboard_s": boards,
        "peak_rss_gb": round(peak, 3),
        "workers_peak_rss_gb": round(workers, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--voters", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apex-big-store-"))
    try:
        template = prepare_template(work)
        empty = run_store(template, work, "empty", 0, args)
        print("empty:", json.dumps(empty), flush=True)
        big = run_store(template, work, "big", args.votes, args)
        print("big:", json.dumps(big), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = {
        "vote_p99": round(big["vote_p99_s"] / empty["vote_p99_s"], 2),
        "vote_p50": round(big["vote_p50_s"] / empty["vote_p50_s"], 2),
        "first_battle": round(big["first_battle_s"] / empty["first_battle_s"], 2),
        "peak_rss": round(big["peak_rss_gb"] / empty["peak_rss_gb"], 2),
        "peak_rss_with_workers": round(
            (big["peak_rss_gb"] + big["workers_peak_rss_gb"])
            / (empty["peak_rss_gb"] + empty["workers_peak_rss_gb"]),
            2,
        ),
    }
    targets = {
        "vote_p99_within_1.5x": ratios["vote_p99"] <= 1.5,
        "no_vote_over_1s": big["vote_max_s"] <= 1.0,
        "leaderboard_views_under_1s": max(big["leaderboard_s"].values()) < 1.0,
        "first_battle_under_30s": big["first_battle_s"] < 30.0,
        "peak_rss_within_1.3x": ratios["peak_rss"] <= 1.3,
    }
    print(f"big/empty: {ratios}; targets: {targets}")
    print(json.dumps({"benchmark": "big_store", "empty": empty, "big": big, "ratios": ratios,
                      "targets": targets}))  # fmt: skip


if __name__ == "__main__":
    main()

"""Arena load: K concurrent gradio_client voters doing M full battles each against a launched app.

A full battle is what a visitor's browser does: ``/new_battle``, one ``/listen`` report per clip,
``/vote``. The app is ``app.py`` itself in a subprocess (production wiring, offline demo model, the
demo corpus as pool) with ``APEX_MIN_LISTEN_S=0`` and no rate limit, so the figures measure the
serving path, not the rules. In one run:

1. baseline: one voter, sequential (the latency floor of the stack);
2. load: K voters at once.

Each voter is a process of its own that connects first and starts battling when all have
connected, so the clients neither share a GIL nor count their start-up; the timed phase runs from
that start to the last voter's finish. The server's CPU seconds per acknowledged vote (one full
battle: four requests) and the voters' own are reported too: on a machine with few cores both draw
on the same CPUs, and ``votes/s <= cores / (server + client CPU per vote)``.

Reported: votes per second (acknowledged votes / wall time of the phase), p50/p99 latency of the
``/vote`` call, the speed-up of K voters over one, and integrity: every vote a client was told was
stored must be in the store exactly once (``lost``), no battle may hold two votes
(``duplicated``), and no vote may be stored that no client was told about
(``unacknowledged_stored``, e.g. a call that timed out after the write). Targets with K=16:
>= 50 votes/s, p99 <= 1 s, zero lost, zero duplicated. Ends with one JSON line.

    python benchmarks/arena_load.py [--clients 16] [--battles 25] [--data-dir DIR]

``--data-dir`` keeps the demo model and the scored pool between runs (the first start builds them,
a few minutes on a small CPU); the default is a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from apex.tasks import PREFERENCES, SIDES

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    """``python app.py`` with benchmark settings; output goes to ``log_path``."""
    env = {
        **os.environ,
        "APEX_DATA_DIR": str(data_dir),
        "APEX_PORT": str(port),
        "APEX_HOST": "127.0.0.1",
        "APEX_DEMO_CLIPS": "48",
        "APEX_MIN_LISTEN_S": "0",
        "APEX_RATE_LIMIT_VOTES": "100000000",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log = log_path.open("w")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=log
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Poll until a battle can be issued (scorer and pool warm), or fail."""
    deadline = time.monotonic() + timeout_s
    client = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}; see its log")
        try:
            client = client or make_client(url)
            client.predict(api_name="/new_battle")
            return
        except Exception:
            time.sleep(2.0)
    raise SystemExit(f"the app was not ready within {timeout_s:.0f} s")


def make_client(url: str):
    """A gradio_client session. ``ssl_verify=False`` only because the URL is plain http on
    127.0.0.1: gradio_client builds a new httpx client (and TLS context, ~30 ms of CPU) for every
    call when verification is on, which would make this benchmark measure its own client."""
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, ssl_verify=False)


def _battle(client, rng: random.Random) -> dict:
    info, _, _ = client.predict(api_name="/new_battle")
    battle = info["battle_id"]
    for side in SIDES:
        client.predict(battle, side, 5.0, api_name="/listen")
    pref = rng.choice(PREFERENCES)
    start = time.perf_counter()
    try:
        reveal = client.predict(battle, pref, api_name="/vote")
        ok, vote_id = True, reveal["vote_id"]
    except Exception as err:  # counted, not fatal: integrity is checked against the store
        ok, vote_id = False, repr(err)
    latency = time.perf_counter() - start
    return {"battle": battle, "ok": ok, "vote_id": vote_id, "latency_s": latency}


def _voter_process(url: str, battles: int, seed: int, barrier, out) -> None:
    """A voter in its own process: connect, wait for the others, battle, report."""
    client = make_client(url)  # connecting (config, API info) is not part of the timed phase
    rng = random.Random(seed)
    barrier.wait()
    cpu = time.process_time()
    records = [_battle(client, rng) for _ in range(battles)]
    out.put((records, time.perf_counter(), time.process_time() - cpu))
    client.close()


def run_phase(url: str, clients: int, battles: int, server_pid: int) -> dict:
    """All voters at once, each in its own process (so that the clients' CPU and GIL do not
    slow one another down, and the latency measured is the server's plus the network's).

    Returns the voters' records, the phase's wall time (first start to last finish), the server
    process's CPU seconds over the phase and the voters' own CPU seconds.
    """
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_voter_process, args=(url, battles, seed, barrier, out))
        for seed in range(clients)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)
    start, server_cpu = time.perf_counter(), process_cpu_s(server_pid)
    results = [out.get(timeout=3600) for _ in procs]
    server_cpu = process_cpu_s(server_pid) - server_cpu
    for proc in procs:
        proc.join()
    return {
        "records": [r for records, _, _ in results for r in records],
        "wall_s": max(end for _, end, _ in results) - start,
        "server_cpu_s": server_cpu,
        "client_cpu_s": sum(cpu for _, _, cpu in results),
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def integrity(store_path: Path, records: list[dict]) -> dict[str, int]:
    """Compare what clients were told with what the store holds, for these battles only."""
    from annotation.store import SQLiteVoteStore

    with SQLiteVoteStore(store_path) as store:
        votes = store.votes_frame()
    ours = {r["battle"] for r in records}
    stored = votes[votes["battle_uuid"].isin(ours)]
    told = {r["vote_id"] for r in records if r["ok"]}
    stored_ids = list(stored["vote_id"])
    return {
        "acknowledged": len(told),
        "stored": len(stored_ids),
        "lost": len(told - set(stored_ids)),
        "duplicated": len(stored_ids)
        - len(set(stored_ids))
        + int((stored["battle_uuid"].value_counts() > 1).sum()),
        "unacknowledged_stored": len(set(stored_ids) - told),
        "errors": sum(not r["ok"] for r in records),
    }


def summarise(phase: dict) -> dict[str, float]:
    """Votes/s, vote-call latency and CPU per acknowledged vote (one full battle: 4 requests)."""
    latency = np.array([r["latency_s"] for r in phase["records"] if r["ok"]])
    acked = int(latency.size)
    per_vote = 1000 / max(acked, 1)
    return {
        "votes_per_s": round(acked / phase["wall_s"], 2),
        "vote_p50_s": round(float(np.percentile(latency, 50)), 4) if acked else None,
        "vote_p99_s": round(float(np.percentile(latency, 99)), 4) if acked else None,
        "wall_s": round(phase["wall_s"], 2),
        "server_cpu_ms_per_vote": round(phase["server_cpu_s"] * per_vote, 1),
        "client_cpu_ms_per_vote": round(phase["client_cpu_s"] * per_vote, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent voters (K)")
    parser.add_argument("--battles", type=int, default=25, help="full battles per voter (M)")
    parser.add_argument("--baseline-battles", type=int, default=40, help="battles of one voter")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep models/pool here")
    parser.add_argument("--warmup-timeout", type=float, default=900.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="apex-arena-load-"))
    data_dir = args.data_dir or tmp / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_app(data_dir, port, tmp / "app.log")
    try:
        t0 = time.perf_counter()
        wait_ready(url, proc, args.warmup_timeout)
        warmup_s = time.perf_counter() - t0
        baseline = run_phase(url, 1, args.baseline_battles, proc.pid)
        loaded = run_phase(url, args.clients, args.battles, proc.pid)
        checks = integrity(data_dir / "votes.sqlite", baseline["records"] + loaded["records"])
    finally:
        proc.terminate()
        proc.wait(30)
    shutil.rmtree(tmp, ignore_errors=True)  # our temporary folder (the app log stays on failure)
    base, load = summarise(baseline), summarise(loaded)
    result = {
        "benchmark": "arena_load",
        "clients": args.clients,
        "battles_per_client": args.battles,
        **load,
        "baseline_1_client": base,
        "speedup_vs_1_client": round(load["votes_per_s"] / base["votes_per_s"], 2),
        **checks,
        "warmup_s": round(warmup_s, 1),
        "cpus": os.cpu_count(),
        "targets_met": bool(
            load["votes_per_s"] >= 50
            and (load["vote_p99_s"] or 99) <= 1.0
            and checks["lost"] == 0
            and checks["duplicated"] == 0
        ),
    }
    print(f"app log: {tmp / 'app.log'}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

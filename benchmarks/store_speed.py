"""Durable votes per second of the SQLite vote store: one writer, then 8 writer processes at once.

Every vote is its own committed transaction with ``synchronous=FULL`` (one fsync of the WAL per
vote), exactly as the arena stores them, so the figures are what the server can acknowledge.
The baseline measured in the same run is the same single writer with ``synchronous=OFF`` (no
fsync, not durable): the ratio is the price of durability on this disk.

Usage: ``python benchmarks/store_speed.py [--votes 2000] [--writers 8] [--dir DIR]``; ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation.store import SQLiteVoteStore, VoteRecord
from apex.tasks import PREFERENCES, SCORE_NAMES


def _vote(prefix: str, i: int) -> VoteRecord:
    now = time.time()
    clips = {
        f"{field}_{side}": value
        for side in ("a", "b")
        for field, value in (
            ("system", f"system-{side}"), ("clip", f"{side}{i}"), ("audio", f"audio/{side}{i}.wav")
        )
    }  # fmt: skip
    return VoteRecord(
        vote_id=f"{prefix}-{i}", battle_uuid=f"{prefix}-b{i}", timestamp=now,
        user_pseudonym=f"voter-{i % 97}", session_pseudonym=f"session-{i % 31}",
        prompt="an upbeat synth-pop song about the sea", is_instrumental=bool(i % 2),
        preference=PREFERENCES[i % len(PREFERENCES)], **clips,
        listen_data_a=[[5.0, now - 9.0], [10.0, now - 4.0]], listen_data_b=[[8.0, now - 1.0]],
        total_listening_time_a=10.0, total_listening_time_b=8.0,
        apex_a=dict.fromkeys(SCORE_NAMES, 3.0), apex_b=dict.fromkeys(SCORE_NAMES, 2.5),
        apex_p_a=0.62, apex_model_version="bench@1",
    )  # fmt: skip


def _write(path: str, prefix: str, count: int, synchronous: str, start_at: float) -> tuple:
    """Insert ``count`` votes, one transaction each; returns (first, last) wall-clock seconds."""
    store = SQLiteVoteStore(path)
    store._con.execute(f"PRAGMA synchronous = {synchronous}")  # the baseline only changes this
    votes = [_vote(prefix, i) for i in range(count)]
    while time.time() < start_at:  # writers start together, after their interpreters are up
        time.sleep(0.001)
    begin = time.time()
    for vote in votes:
        store.insert_vote(vote)
    end = time.time()
    store.close()
    return begin, end


def _run(folder: Path, name: str, writers: int, per_writer: int, synchronous: str) -> float:
    """Durable-insert throughput, votes per second, over the span all writers were writing."""
    path = str(folder / f"{name}.sqlite")
    SQLiteVoteStore(path).close()  # schema first, so writers measure inserts only
    if writers == 1:
        spans = [_write(path, name, per_writer, synchronous, 0.0)]
    else:
        start_at = time.time() + 3.0
        args = [(path, f"{name}{k}", per_writer, synchronous, start_at) for k in range(writers)]
        with mp.get_context("spawn").Pool(writers) as pool:
            spans = pool.starmap(_write, args)
    elapsed = max(end for _, end in spans) - min(begin for begin, _ in spans)
    with SQLiteVoteStore(path) as store:
        stored, check = store.counts()["votes"], store.integrity_check()
    if stored != writers * per_writer or check != "ok":
        raise SystemExit(f"{name}: stored {stored} of {writers * per_writer} votes, check={check}")
    return writers * per_writer / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=2000, help="votes per configuration")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writer processes")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the databases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        baseline = _run(folder, "nosync", 1, args.votes, "OFF")
        one = _run(folder, "one", 1, args.votes, "FULL")
        many = _run(folder, "many", args.writers, args.votes // args.writers, "FULL")
    result = {
        "benchmark": "store_speed",
        "votes": args.votes,
        "durable_votes_per_s_1_writer": round(one, 1),
        f"durable_votes_per_s_{args.writers}_writers": round(many, 1),
        "nondurable_votes_per_s_1_writer_baseline": round(baseline, 1),
        "durability_cost_ratio": round(baseline / one, 2),
        "concurrency_ratio": round(many / one, 2),
    }
    print(
        f"1 writer: {one:.0f} durable votes/s; {args.writers} writers: {many:.0f} votes/s; "
        f"without fsync: {baseline:.0f} votes/s",
        flush=True,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Durability and concurrency of the vote store across real processes.

A writer process prints each vote id only after ``insert_vote`` returned (the acknowledgement);
it is killed with SIGKILL mid-stream, and every acknowledged vote must still be there in a file
that passes ``PRAGMA integrity_check``. Several writer processes at once must store exactly what
they were given: no vote lost, none twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from annotation.store import SQLiteVoteStore

ROOT = Path(__file__).resolve().parents[3]  # the repository root
WRITER = """
import sys
from annotation.store import DuplicateVote, SQLiteVoteStore
from tests.annotation.store.test_sqlite import make_vote

path, prefix, count, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = SQLiteVoteStore(path)
print("ready", flush=True)
for i in range(count):
    vote = make_vote(i, vote_id=f"{prefix}-{i}", battle_uuid=f"{prefix}-b{i}", voter=prefix)
    assert store.insert_vote(vote)
    print(vote.vote_id, flush=True)
    if i < shared:  # every writer also sends the same shared votes: stored once in all
        try:
            store.insert_vote(make_vote(i, vote_id=f"shared-{i}", battle_uuid=f"shared-b{i}"))
        except DuplicateVote:
            raise SystemExit("a shared vote id was refused instead of being idempotent")
"""


def start_writer(path: Path, prefix: str, count: int, shared: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", WRITER, str(path), prefix, str(count), str(shared)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)


@pytest.mark.parametrize("kill_after", [1, 25])
def test_sigkill_loses_no_acknowledged_vote(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "votes.sqlite"
    acked: list[str] = []
    for round_ in range(2):  # a second writer after the crash: recovery and more votes
        proc = start_writer(path, f"w{round_}", 100_000)
        assert proc.stdout.readline().strip() == "ready"
        while len(acked) < kill_after * (round_ + 1):
            acked.append(proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
        # Lines printed before the kill landed are acknowledgements too; a torn last line is not.
        rest = proc.stdout.read()
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        acked += [line for line in rest.split("\n")[:-1] if line]
    with SQLiteVoteStore(path) as store:
        assert store.integrity_check() == "ok"
        stored = set(store.votes_frame()["vote_id"])
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged votes lost: {sorted(missing)[:5]}"
    assert len(acked) >= 2 * kill_after


def test_concurrent_writer_processes_store_exact_counts(tmp_path: Path) -> None:
    path = tmp_path / "votes.sqlite"
    SQLiteVoteStore(path).close()  # create the schema once; writers also race to open it
    procs = [start_writer(path, f"p{k}", 50, shared=10) for k in range(4)]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    with SQLiteVoteStore(path) as store:
        frame = store.votes_frame()
        assert store.integrity_check() == "ok"
    assert len(frame) == 4 * 50 + 10
    assert frame["vote_id"].is_unique and frame["battle_uuid"].is_unique
    for k in range(4):
        assert (frame["user_pseudonym"] == f"p{k}").sum() == 50
    assert frame["row_id"].is_monotonic_increasing

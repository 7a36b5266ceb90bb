"""Vote store: schema, durability settings, idempotent votes, queries, thread safety."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from annotation.rules import ListenEvent
from annotation.store import (
    SCHEMA_VERSION,
    Battle,
    DuplicateVote,
    SQLiteVoteStore,
    StoreError,
    VoteRecord,
    open_store,
)


def make_battle(n: int, *, session: str = "s1", systems=("x", "y"), t: float = 1000.0) -> Battle:
    return Battle(
        battle_id=f"b{n}",
        issued_at=t,
        session=session,
        clip_a=f"c{n}a",
        clip_b=f"c{n}b",
        system_a=systems[0],
        system_b=systems[1],
        audio_a=f"audio/c{n}a.wav",
        audio_b=f"audio/c{n}b.wav",
        prompt="a calm piano piece",
        is_instrumental=True,
    )


def make_vote(n: int, *, voter: str = "v1", t: float = 1010.0, **changes) -> VoteRecord:
    values = dict(
        vote_id=f"vote-{n}",
        battle_uuid=f"b{n}",
        timestamp=t,
        user_pseudonym=voter,
        session_pseudonym="s1",
        prompt="a calm piano piece",
        is_instrumental=True,
        system_a="x",
        system_b="y",
        clip_a=f"c{n}a",
        clip_b=f"c{n}b",
        audio_a=f"audio/c{n}a.wav",
        audio_b=f"audio/c{n}b.wav",
        preference="A",
        listen_data_a=[[5.0, t - 4.0]],
        listen_data_b=[[6.5, t - 1.0]],
        total_listening_time_a=5.0,
        total_listening_time_b=6.5,
        apex_a={"coherence": 3.5, "score_likes": 61.25},
        apex_b={"coherence": 2.0, "score_likes": 40.0},
        apex_p_a=0.7,
        apex_model_version="demo@1",
        feedback="nice",
        ratings_a={"musicality": 4},
        ratings_b=None,
        source="live",
    )
    values.update(changes)
    return VoteRecord(**values)


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteVoteStore(tmp_path / "votes.sqlite") as s:
        yield s


def test_pragmas_and_schema(store: SQLiteVoteStore) -> None:
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # synchronous is per connection: check the store's own.
    assert store._con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.integrity_check() == "ok"


def test_reopen_keeps_data_and_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite"
    with SQLiteVoteStore(path) as s:
        s.insert_vote(make_vote(1))
    with SQLiteVoteStore(path) as s:
        assert s.counts()["votes"] == 1
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this code"):
        SQLiteVoteStore(path)


def test_battle_round_trip_and_listen_events(store: SQLiteVoteStore) -> None:
    battle = make_battle(1)
    store.insert_battle(battle)
    assert store.get_battle("b1") == battle
    assert store.get_battle("nope") is None
    store.add_listen_event("b1", ListenEvent("A", 2.0, 1002.0))
    store.add_listen_event("b1", ListenEvent("B", 3.0, 1003.0))
    assert store.listen_events("b1") == [
        ListenEvent("A", 2.0, 1002.0),
        ListenEvent("B", 3.0, 1003.0),
    ]
    assert store.seen_pairs("s1") == {frozenset({"c1a", "c1b"})}
    assert store.seen_pairs("other") == set()


def test_vote_is_idempotent_and_one_per_battle(store: SQLiteVoteStore) -> None:
    store.insert_battle(make_battle(1))
    assert store.insert_vote(make_vote(1)) is True
    assert store.insert_vote(make_vote(1)) is False  # a retried request stores nothing new
    with pytest.raises(DuplicateVote, match="one vote per battle"):
        store.insert_vote(make_vote(1, vote_id="another"))
    assert store.counts()["votes"] == 1
    assert store.get_battle("b1").status == "voted"


def test_votes_frame_round_trips_every_field(store: SQLiteVoteStore) -> None:
    vote = make_vote(1)
    store.insert_vote(vote)
    store.insert_vote(make_vote(2, feedback=None, apex_a=None, apex_p_a=None))
    frame = store.votes_frame()
    assert list(frame["row_id"]) == [1, 2]
    assert VoteRecord.from_mapping(frame.iloc[0].to_dict()) == vote
    assert frame.iloc[1]["apex_a"] is None and frame.iloc[1]["feedback"] is None
    assert list(store.votes_frame(since_row=1)["vote_id"]) == ["vote-2"]
    assert store.max_row_id() == 2


def test_rejects_unknown_source_and_preference(store: SQLiteVoteStore) -> None:
    with pytest.raises(StoreError, match="source"):
        store.insert_vote(make_vote(1, source="bot"))
    with pytest.raises(StoreError, match="preference"):
        store.insert_vote(make_vote(1, preference="C"))
    with pytest.raises(StoreError, match="not valid"):
        store.insert_vote(make_vote(1, prompt=None))
    assert store.counts()["votes"] == 0


def test_voter_queries_and_pair_counts(store: SQLiteVoteStore) -> None:
    store.insert_battle(make_battle(1, systems=("x", "y")))
    store.insert_battle(make_battle(2, systems=("y", "x")))
    store.insert_battle(make_battle(3, systems=("x", "z")))
    store.insert_vote(make_vote(1, t=100.0))
    store.insert_vote(make_vote(2, t=200.0))
    store.insert_vote(make_vote(9, t=300.0, voter="v2", system_a="z", system_b="y"))
    assert store.vote_times("v1", since=150.0) == [200.0]
    assert store.vote_count("v1") == 2 and store.vote_count("nobody") == 0
    # Battles count once whether voted or not; a vote without a battle (imported) counts too.
    assert store.pair_counts() == {("x", "y"): 2, ("x", "z"): 1, ("y", "z"): 1}
    counts = store.counts()
    assert counts["battles"] == 3 and counts["open_battles"] == 1 and counts["voters"] == 2


def test_import_keeps_free_row_ids_and_is_idempotent(store: SQLiteVoteStore) -> None:
    added = store.import_votes([(5, make_vote(1)), (7, make_vote(2)), (5, make_vote(3))])
    assert added == 3
    frame = store.votes_frame()
    assert list(frame["row_id"][:2]) == [5, 7] and frame["row_id"].iloc[2] > 7
    assert frame["imported"].all()
    assert store.import_votes([(5, make_vote(1)), (None, make_vote(1, vote_id="x"))]) == 0
    store.insert_vote(make_vote(4))
    assert store.max_row_id() > 8  # new votes continue after every imported row id


def test_threads_share_one_store(store: SQLiteVoteStore) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(20):
                n = k * 100 + i
                store.insert_battle(make_battle(n))
                store.insert_vote(make_vote(n))
                store.votes_frame(since_row=store.max_row_id() - 1)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.counts()["votes"] == 80
    assert store.votes_frame()["vote_id"].is_unique


def test_readers_see_commits_without_waiting_for_the_writer(tmp_path: Path) -> None:
    # SQLite only (not in the shared PostgreSQL suite): each thread reads through its own
    # connection, and sees what the writer committed even while the writer holds its lock
    # (e.g. during a vote's fsync).
    store = SQLiteVoteStore(tmp_path / "v.sqlite")
    store.insert_battle(make_battle(1))
    seen: list = []
    with store._lock:  # the writer is busy
        reader = threading.Thread(target=lambda: seen.append(store.get_battle("b1")))
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive()
    assert seen == [make_battle(1)]
    # Readers cannot write, and writes of battles and listening leave the writer at FULL.
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._read("DELETE FROM votes")
    store.add_listen_event("b1", ListenEvent("A", 1.0, 1001.0))
    assert store._con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_close_closes_every_reader(tmp_path: Path) -> None:
    store = SQLiteVoteStore(tmp_path / "v.sqlite")
    readers: list = []

    def read() -> None:  # opens this thread's reader
        store.counts()
        readers.append(store._local.con)

    worker = threading.Thread(target=read)
    worker.start()
    worker.join()
    read()
    store.close()
    for con in readers:  # the other thread's reader and this one's
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            con.execute("SELECT 1")
    with pytest.raises(StoreError, match="closed"):
        store.counts()


_CLOSE_WHILE_READING = """
import sys, threading
from annotation.store import SQLiteVoteStore, StoreError
sys.path.insert(0, sys.argv[2])
from test_sqlite import make_battle, make_vote

store = SQLiteVoteStore(sys.argv[1])
for n in range(300):
    store.insert_battle(make_battle(n))
    store.insert_vote(make_vote(n))
ended = []

def read():
    try:
        while True:
            store.votes_frame()
    except StoreError:
        ended.append(1)

threads = [threading.Thread(target=read) for _ in range(4)]
for t in threads:
    t.start()
import time
time.sleep(0.3)  # every reader has its connection and is mid-query most of the time
store.close()
for t in threads:
    t.join(10)
print(len(ended))
"""


def test_closing_while_other_threads_read_ends_their_reads_cleanly(tmp_path: Path) -> None:
    # Closing a connection another thread is reading from crashes CPython's sqlite3 (the
    # app closes the store at shutdown while the consensus fit may be reading): run it in a
    # child, so a crash is a failure, not a dead test run.
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    root = str(Path(__file__).resolve().parents[3])
    for attempt in range(3):
        done = subprocess.run(
            [sys.executable, "-c", _CLOSE_WHILE_READING, str(tmp_path / f"v{attempt}.db"), here],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
        assert done.stdout.split() == ["4"], done.stdout  # every reader got StoreError


def test_open_store_uses_settings(settings) -> None:
    with open_store(settings) as s:
        assert s.path == settings.store_path
    with pytest.raises(StoreError, match="not a supported backend"):
        open_store(settings.replace(database_url="mysql://u@h/db"))


def test_import_refuses_an_invalid_batch_whole(store: SQLiteVoteStore) -> None:
    rows = [(None, make_vote(1)), (None, make_vote(2, prompt=None))]
    with pytest.raises(StoreError, match="vote-2 is not valid"):
        store.import_votes(rows)
    assert store.counts()["votes"] == 0  # the batch rolled back: nothing half-imported
    assert store.import_votes(rows[:1]) == 1

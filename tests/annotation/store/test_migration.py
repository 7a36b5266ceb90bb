"""Schema 1 -> 2 (loudness, duration, vocals, flags, signed_in) -> 3 (pool): votes survive."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from annotation.export import export_shards, import_shards, read_vote_shards
from annotation.store import SCHEMA_VERSION, SQLiteVoteStore
from tests.annotation.store import pg
from tests.annotation.store.test_sqlite import make_vote

pg_server, pg_url = pg.pg_server, pg.pg_url  # the throwaway PostgreSQL server's fixtures

V1_COLUMNS = (
    "vote_id, battle_uuid, timestamp, user_pseudonym, session_pseudonym, prompt, "
    "is_instrumental, system_a, system_b, clip_a, clip_b, audio_a, audio_b, preference, "
    "listen_data_a, listen_data_b, total_listening_time_a, total_listening_time_b, source"
)


def make_v1_store(path: Path, n_votes: int) -> None:
    """A store as version 1 of the code left it: v1 tables, user_version 1, some votes."""
    con = sqlite3.connect(path)
    for statement in SQLiteVoteStore._MIGRATIONS[0]:
        con.execute(statement)
    for n in range(n_votes):
        con.execute(
            f"INSERT INTO votes ({V1_COLUMNS}) VALUES "
            "(?, ?, ?, 'v1', 's1', 'p', 1, 'x', 'y', 'ca', 'cb', 'a.wav', 'b.wav', 'A', ?, ?, "
            "5.0, 6.0, 'live')",
            (f"vote-{n}", f"b{n}", 1000.0 + n, json.dumps([[5.0, 1.0]]), json.dumps([])),
        )
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()


def test_a_version_1_store_migrates_without_losing_votes(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 3
    path = tmp_path / "votes.sqlite"
    make_v1_store(path, 5)
    with SQLiteVoteStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        old = store.votes_frame()
        assert list(old["vote_id"]) == [f"vote-{n}" for n in range(5)]
        assert (old["flags"] == "").all() and not old["signed_in"].any()
        assert old["loudness_a"].isna().all() and old["loudness_matched"].isna().all()
        assert old["instrumental_a"].map(lambda v: v is None).all()
        assert old["pool"].map(lambda v: v is None).all()  # unknown for votes before schema 3
        # New votes carry the new fields next to the old ones.
        store.insert_vote(
            make_vote(
                9, loudness_a=-14.2, loudness_b=-20.5, loudness_matched=True, duration_a=12.0,
                duration_b=30.0, instrumental_a=True, instrumental_b=False,
                flags="too_fast,burst", signed_in=True, pool="demo:0",
            )
        )  # fmt: skip
        row = store.votes_frame().iloc[-1]
        assert (row["loudness_a"], row["loudness_b"], row["duration_b"]) == (-14.2, -20.5, 30.0)
        assert row["loudness_matched"] is True and row["instrumental_b"] is False
        assert row["flags"] == "too_fast,burst" and bool(row["signed_in"])
        shards = export_shards(store, tmp_path / "export")
    released = read_vote_shards(tmp_path / "export")
    assert len(shards) == 1 and len(released) == 6
    assert released["flags"].tolist()[-1] == "too_fast,burst"
    assert released["loudness_a"].tolist()[-1] == -14.2
    assert pd.isna(released["loudness_a"].iloc[0])
    # A restore from the shards keeps the new fields.
    with SQLiteVoteStore(tmp_path / "restored.sqlite") as restored:
        assert import_shards(restored, tmp_path / "export") == 6
        back = restored.votes_frame()
    assert back["flags"].tolist() == [""] * 5 + ["too_fast,burst"]
    assert back["signed_in"].tolist() == [False] * 5 + [True]
    assert back["loudness_matched"].tolist()[-1] is True
    assert back["pool"].tolist() == [None] * 5 + ["demo:0"]


def test_a_version_1_postgres_database_migrates_without_losing_votes(request) -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg")
    import psycopg

    from annotation.store.pg import PostgresVoteStore

    pg_url = request.getfixturevalue("pg_url")
    with psycopg.connect(pg_url, autocommit=True) as con:
        for statement in PostgresVoteStore._MIGRATIONS[0]:
            con.execute(statement)
        con.execute("CREATE TABLE apex_schema (version INTEGER NOT NULL)")
        con.execute("INSERT INTO apex_schema VALUES (1)")
        con.execute(
            f"INSERT INTO votes (row_id, {V1_COLUMNS}) VALUES (1, 'vote-0', 'b0', 1000.0, "
            "'v1', 's1', 'p', TRUE, 'x', 'y', 'ca', 'cb', 'a.wav', 'b.wav', 'B', '[]', '[]', "
            "5.0, 6.0, 'live')"
        )
    with PostgresVoteStore(pg_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        frame = store.votes_frame()
        assert frame["vote_id"].tolist() == ["vote-0"] and frame["flags"].tolist() == [""]
        store.insert_vote(make_vote(5, flags="burst", loudness_a=-9.5, signed_in=True))
        row = store.votes_frame().iloc[-1]
    assert row["flags"] == "burst" and row["loudness_a"] == -9.5 and bool(row["signed_in"])

"""The PostgreSQL vote store passes the SQLite store's suite, and both survive concurrent writers.

How the shared suite runs: every test of ``tests/annotation/store/test_sqlite.py`` that takes the
``store`` fixture, except the one that reads SQLite's pragmas (:data:`SQLITE_ONLY`), only calls
the store's public methods. They are imported
here, and pytest resolves their ``store`` fixture in *this* module, where it is a
:class:`PostgresVoteStore` on a fresh database. So the same test functions run once against
SQLite (in their own module) and once against PostgreSQL (here), and any test later added there
with a ``store`` argument joins automatically. The SQLite-only tests there (pragmas, the file
path of ``open_store``) have PostgreSQL counterparts below.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from annotation.store import SQLiteVoteStore, StoreError
from annotation.store.pg import SCHEMA_VERSION, PostgresVoteStore
from tests.annotation.store import pg
from tests.annotation.store import test_sqlite as sqlite_suite

pg_server, pg_url = pg.pg_server, pg.pg_url  # the throwaway server's fixtures, used by name

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg (requirements.txt)")

ROOT = Path(__file__).resolve().parents[3]  # the repository root

#: Tests there that take ``store`` but inspect SQLite itself (its pragmas and file).
SQLITE_ONLY = frozenset({"test_pragmas_and_schema"})
SHARED_TESTS = sorted(
    name
    for name, fn in vars(sqlite_suite).items()
    if name.startswith("test_")
    and name not in SQLITE_ONLY
    and "store" in inspect.signature(fn).parameters
)
for _name in SHARED_TESTS:
    globals()[_name] = getattr(sqlite_suite, _name)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresVoteStore]:
    """What the imported SQLite suite receives here: a PostgreSQL store on an empty database."""
    with PostgresVoteStore(pg_url) as s:
        yield s


def test_shared_suite_is_not_empty() -> None:
    assert len(SHARED_TESTS) >= 6, SHARED_TESTS


def test_reopen_keeps_data_and_refuses_newer_schema(pg_url: str) -> None:
    import psycopg

    with PostgresVoteStore(pg_url) as s:
        s.insert_vote(sqlite_suite.make_vote(1))
        assert s.schema_version == SCHEMA_VERSION
    with PostgresVoteStore(pg_url) as s:  # a second replica opening a migrated database
        assert s.counts()["votes"] == 1
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("UPDATE apex_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this code"):
        PostgresVoteStore(pg_url)


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as info:
        PostgresVoteStore("postgresql://apex:s3cret@127.0.0.1:1/votes")
    assert "s3cret" not in str(info.value)


def test_reconnects_after_the_connection_breaks(pg_url: str) -> None:
    with PostgresVoteStore(pg_url) as s:
        s.insert_vote(sqlite_suite.make_vote(1))
        s._con.close()  # what a server restart does to an open connection
        assert s.counts()["votes"] == 1


# ---------------------------------------------------------------------------- processes
WRITER = """
import sys
from annotation.store import DuplicateVote, SQLiteVoteStore
from tests.annotation.store.test_sqlite import make_vote

kind, where, prefix, count, shared = sys.argv[1:6]
if kind == "postgresql":
    from annotation.store.pg import PostgresVoteStore
    store = PostgresVoteStore(where)
else:
    store = SQLiteVoteStore(where)
for i in range(int(count)):
    vote = make_vote(i, vote_id=f"{prefix}-{i}", battle_uuid=f"{prefix}-b{i}", voter=prefix)
    assert store.insert_vote(vote)
    print(vote.vote_id, flush=True)  # the acknowledgement: printed only after insert_vote returned
    if i < int(shared):  # every writer also sends the same shared votes: stored once in all
        try:
            store.insert_vote(make_vote(i, vote_id=f"shared-{i}", battle_uuid=f"shared-b{i}"))
        except DuplicateVote:
            raise SystemExit("a shared vote id was refused instead of being idempotent")
store.close()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(kind, location) of an empty store of each backend."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "votes.sqlite")
    return "postgresql", request.getfixturevalue("pg_url")


def open_backend(kind: str, where: str):
    return PostgresVoteStore(where) if kind == "postgresql" else SQLiteVoteStore(where)


def test_concurrent_writer_processes_store_exact_counts(backend: tuple[str, str]) -> None:
    kind, where = backend
    open_backend(kind, where).close()  # schema first; the writers also race to open it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers, count, shared = 4, 40, 10
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, kind, where, f"p{k}", str(count), str(shared)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(writers)
    ]
    errors = [proc.communicate(timeout=180)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * writers, errors
    with open_backend(kind, where) as store:
        frame = store.votes_frame()
        counts = store.counts()
    assert len(frame) == counts["votes"] == writers * count + shared
    assert frame["vote_id"].is_unique and frame["battle_uuid"].is_unique
    for k in range(writers):
        assert (frame["user_pseudonym"] == f"p{k}").sum() == count
    # Ids are gap-free and in commit order, which append-only export relies on.
    assert frame["row_id"].tolist() == list(range(1, len(frame) + 1))


def test_sigkill_loses_no_acknowledged_vote(pg_url: str) -> None:
    PostgresVoteStore(pg_url).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", WRITER, "postgresql", pg_url, "k", "100000", "0"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    acked = [proc.stdout.readline().strip() for _ in range(20)]
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # lines printed before the kill landed are acknowledgements too
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    acked += [line for line in rest.split("\n")[:-1] if line]
    with PostgresVoteStore(pg_url) as store:
        stored = set(store.votes_frame()["vote_id"])
    assert set(acked) <= stored
    assert len(stored) - len(acked) <= 1  # at most the vote in flight when the kill landed


def test_export_from_postgresql_restores_into_sqlite(pg_url: str, tmp_path: Path) -> None:
    from annotation.export import export_shards, import_shards

    with PostgresVoteStore(pg_url) as pg_store:
        pg_store.insert_vote(sqlite_suite.make_vote(1))
        pg_store.insert_vote(sqlite_suite.make_vote(2, apex_a=None, feedback=None))
        assert export_shards(pg_store, tmp_path / "export")
        source = pg_store.votes_frame()
    with SQLiteVoteStore(tmp_path / "restored.sqlite") as restored:
        assert import_shards(restored, tmp_path / "export") == 2
        copy = restored.votes_frame()
    assert copy["row_id"].tolist() == source["row_id"].tolist()  # numbering carried over
    for name in ("vote_id", "preference", "apex_a", "feedback", "listen_data_a", "timestamp"):
        assert copy[name].tolist() == source[name].tolist(), name


def test_settings_url_selects_the_postgresql_store(pg_url: str, settings) -> None:
    from annotation.store import open_store

    with open_store(settings.replace(database_url=pg_url)) as opened:
        assert isinstance(opened, PostgresVoteStore)
        assert opened.counts()["votes"] == 0

"""The vote store on PostgreSQL (``APEX_DATABASE_URL=postgresql://...``), shared by replicas.

Export reads votes in ``row_id`` order, so vote writes take one advisory lock and number the vote
``MAX(row_id) + 1``: votes commit in id order, and the idempotency check cannot race. One
connection behind a lock; a broken one is replaced on the next call (``insert_vote`` is
idempotent, so callers may retry).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from annotation.store.records import SCHEMA_VERSION, StoreError
from annotation.store.sql import POSTGRES, SQLVoteStore, migrations

CONNECT_TIMEOUT_S = 10
# Advisory lock keys (any two 64-bit numbers unique to this application).
_LOCK_MIGRATE = 0x41504558_0001
_LOCK_VOTES = 0x41504558_0002


class PostgresVoteStore(SQLVoteStore):
    """The PostgreSQL vote store at a libpq ``url``; StoreError when the server cannot be
    reached or its schema is newer than this code."""

    _PARAM = "%s"
    _MIGRATIONS = migrations(POSTGRES)

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._con: Any = None
        self._connect()
        self._migrate()

    def _connect(self) -> None:
        import psycopg

        try:
            self._con = psycopg.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.OperationalError as exc:
            host = self.url.rsplit("@", 1)[-1]  # never echo the password
            raise StoreError(
                f"cannot connect to PostgreSQL at {host} ({str(exc).strip()}); check "
                "APEX_DATABASE_URL and that the server is running and reachable."
            ) from None

    @contextmanager
    def _transaction(self, lock: int | None = None) -> Iterator[Any]:
        """A cursor inside one transaction, optionally holding an advisory lock until commit."""
        with self._lock:
            if self._con.closed or self._con.broken:
                self._connect()
            with self._con.transaction(), self._con.cursor() as cur:
                if lock is not None:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                yield cur

    def _write(self, *, votes: bool = False) -> Any:
        # Vote writers take one lock so that votes commit in row-id order (module docstring);
        # battles and listen events take none.
        return self._transaction(_LOCK_VOTES if votes else None)

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._transaction() as cur:
            return self._execute(cur, sql, params).fetchall()

    def _encode_json(self, value: Any) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def _integrity_error(self) -> type[Exception]:
        import psycopg

        return psycopg.errors.IntegrityError

    def _next_row_id(self, cur: Any) -> int:
        # Under the votes lock, so no other writer can take the same number.
        sql = "SELECT COALESCE(MAX(row_id), 0) + 1 FROM votes"
        return int(self._execute(cur, sql).fetchone()[0])

    @property
    def schema_version(self) -> int:
        """The schema version of the database (0 before the first migration)."""
        rows = self._read("SELECT to_regclass('apex_schema') IS NOT NULL")
        if not rows[0][0]:
            return 0
        return self._read("SELECT version FROM apex_schema")[0][0]

    def _migrate(self) -> None:
        with self._transaction(_LOCK_MIGRATE) as cur:
            # Under the lock: several replicas may start at once; exactly one migrates.
            cur.execute("CREATE TABLE IF NOT EXISTS apex_schema (version INTEGER NOT NULL)")
            cur.execute("SELECT version FROM apex_schema")
            row = cur.fetchone()
            self._apply_migrations(cur, row[0] if row else 0, "the database")
            cur.execute("DELETE FROM apex_schema")
            cur.execute("INSERT INTO apex_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

"""The vote store on SQLite (WAL), durable once acknowledged: the default backend.

Durability: WAL mode with ``synchronous=FULL`` fsyncs the log before each commit returns, so a vote
:meth:`SQLiteVoteStore.insert_vote` acknowledged survives a crash of the process *and* of the
machine. ``NORMAL`` (the usual WAL choice) survives process crashes but may drop the last commits
on power loss; FULL costs one fsync per vote (``benchmarks/store_speed.py``: hundreds per second).

Concurrency: one connection per store behind a lock serves a threaded server; processes share the
file through SQLite's locks and a busy timeout; writes take the lock up front (``BEGIN IMMEDIATE``)
so writers never deadlock upgrading a read lock; SQLite checkpoints the WAL into the file when the
last connection closes. Schema: versioned by ``PRAGMA user_version``,
:data:`_MIGRATIONS` holds the statements of each version, applied in one transaction.

The queries themselves are shared with the PostgreSQL store (:mod:`annotation.store_sql`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from annotation.records import SCHEMA_VERSION, StoreError
from annotation.store_sql import SQLVoteStore

_BUSY_TIMEOUT_S = 30.0

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE battles (
            battle_id TEXT PRIMARY KEY, issued_at REAL NOT NULL, session TEXT NOT NULL,
            clip_a TEXT NOT NULL, clip_b TEXT NOT NULL, system_a TEXT NOT NULL,
            system_b TEXT NOT NULL, audio_a TEXT NOT NULL, audio_b TEXT NOT NULL,
            prompt TEXT NOT NULL, is_instrumental INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'voted')))""",
        "CREATE INDEX battles_by_session ON battles(session)",
        """CREATE TABLE listen_events (
            event_id INTEGER PRIMARY KEY AUTOINCREMENT, battle_id TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('A', 'B')), seconds REAL NOT NULL,
            server_time REAL NOT NULL)""",
        "CREATE INDEX listen_by_battle ON listen_events(battle_id)",
        # row_id: AUTOINCREMENT never reuses a number, so export ranges stay append-only.
        """CREATE TABLE votes (
            row_id INTEGER PRIMARY KEY AUTOINCREMENT, vote_id TEXT NOT NULL UNIQUE,
            battle_uuid TEXT NOT NULL UNIQUE, timestamp REAL NOT NULL,
            user_pseudonym TEXT NOT NULL, session_pseudonym TEXT NOT NULL, prompt TEXT NOT NULL,
            is_instrumental INTEGER NOT NULL, system_a TEXT NOT NULL, system_b TEXT NOT NULL,
            clip_a TEXT NOT NULL, clip_b TEXT NOT NULL, audio_a TEXT NOT NULL,
            audio_b TEXT NOT NULL,
            preference TEXT NOT NULL CHECK (preference IN ('A', 'B', 'TIE', 'BOTH_BAD')),
            listen_data_a TEXT NOT NULL, listen_data_b TEXT NOT NULL,
            total_listening_time_a REAL NOT NULL, total_listening_time_b REAL NOT NULL,
            apex_a TEXT, apex_b TEXT, apex_p_a REAL, apex_model_version TEXT, feedback TEXT,
            ratings_a TEXT, ratings_b TEXT,
            source TEXT NOT NULL CHECK (source IN ('live', 'simulated', 'imported')),
            imported INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX votes_by_voter ON votes(user_pseudonym, timestamp)",
    ),
)


class SQLiteVoteStore(SQLVoteStore):
    """The SQLite implementation of :class:`~annotation.records.VoteStore` (see the module doc).

    Args:
        path: database file; its folder is created when missing.

    Raises:
        StoreError: the file cannot use WAL mode, or its schema is newer than this code.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._con.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        mode = self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(
                f"{self.path} cannot use WAL mode (got {mode!r}); put the data directory on a "
                "local disk (network file systems do not support it)."
            )
        self._con.execute("PRAGMA synchronous = FULL")
        self._migrate()

    # ------------------------------------------------------------------ backend hooks
    @contextmanager
    def _write(self, *, votes: bool = False) -> Iterator[sqlite3.Connection]:
        # Every write takes the database's one write lock up front, votes or not.
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._execute(self._con, sql, params).fetchall()

    def _encode_json(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def _decode_json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else None

    def _integrity_error(self) -> type[Exception]:
        # A failed statement leaves the surrounding transaction intact (SQLite's default ABORT
        # resolution); the shared insert raises StoreError, which rolls back the batch.
        return sqlite3.IntegrityError

    def _next_row_id(self, cur: Any) -> None:
        return None  # AUTOINCREMENT: one past the largest id ever used, never reused

    # ------------------------------------------------------------------ schema and file
    @property
    def schema_version(self) -> int:
        """The schema version of the open database (``PRAGMA user_version``)."""
        return self._read("PRAGMA user_version")[0][0]

    def _migrate(self) -> None:
        if self.schema_version == SCHEMA_VERSION:
            return
        with self._write() as con:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = con.execute("PRAGMA user_version").fetchone()[0]
            self._apply_migrations(con, version, _MIGRATIONS, str(self.path))
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check``; returns ``"ok"`` for a healthy file."""
        return "\n".join(row[0] for row in self._read("PRAGMA integrity_check"))

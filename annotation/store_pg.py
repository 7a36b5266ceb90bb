"""The vote store on PostgreSQL, for several app replicas sharing one store.

Same interface and semantics as :class:`annotation.store.SQLiteVoteStore` (the
:class:`~annotation.store.VoteStore` protocol plus ``max_row_id`` and ``schema_version``), selected
by ``APEX_DATABASE_URL=postgresql://user:password@host:5432/dbname``. psycopg 3 is imported only
when a store is opened.

Durability. A vote is acknowledged when its transaction has committed; with PostgreSQL's default
``synchronous_commit = on`` the commit record is flushed to the WAL first, so an acknowledged vote
survives a crash of the app, of the database server and of its machine.

Row ids and export. Export reads votes in ``row_id`` order and remembers the last id it published
(``votes_frame(since_row=...)``), so a vote must never become visible with a smaller id than one
already seen. A plain sequence breaks that under concurrency (id 11 may commit before id 10). Vote
writes therefore take one transaction-level advisory lock, then number the vote ``MAX(row_id) + 1``
(or keep an imported vote's free original id): votes commit in id order, ids are never reused (no
vote is ever deleted), and the vote-id idempotency check cannot race. Votes arrive at human speed,
so one vote writer at a time costs nothing measurable; battles and listen events take no lock.

Concurrency. One connection per store object, guarded by a lock (a multi-threaded server shares
it like the SQLite store's); processes and replicas each open their own. A broken connection (the
server restarted) is replaced on the next call; the failed call raises and is not retried here
(``insert_vote`` is idempotent by vote id, so the caller may simply retry it).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from annotation.rules import PREFERENCES, ListenEvent
from annotation.store import (
    SOURCES,
    VOTE_FIELDS,
    Battle,
    DuplicateVote,
    StoreError,
    VoteRecord,
)

SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 10
IMPORT_BATCH = 5000  # votes per import transaction (as the SQLite store)
_JSON_FIELDS = ("listen_data_a", "listen_data_b", "apex_a", "apex_b", "ratings_a", "ratings_b")
# Advisory lock keys (any two 64-bit numbers unique to this application).
_LOCK_MIGRATE = 0x41504558_0001
_LOCK_VOTES = 0x41504558_0002

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1: the SQLite schema in PostgreSQL types
        """CREATE TABLE battles (
            battle_id TEXT PRIMARY KEY, issued_at DOUBLE PRECISION NOT NULL,
            session TEXT NOT NULL, clip_a TEXT NOT NULL, clip_b TEXT NOT NULL,
            system_a TEXT NOT NULL, system_b TEXT NOT NULL, audio_a TEXT NOT NULL,
            audio_b TEXT NOT NULL, prompt TEXT NOT NULL, is_instrumental BOOLEAN NOT NULL,
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'voted')))""",
        "CREATE INDEX battles_by_session ON battles(session)",
        """CREATE TABLE listen_events (
            event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, battle_id TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('A', 'B')), seconds DOUBLE PRECISION NOT NULL,
            server_time DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX listen_by_battle ON listen_events(battle_id)",
        """CREATE TABLE votes (
            row_id BIGINT PRIMARY KEY, vote_id TEXT NOT NULL UNIQUE,
            battle_uuid TEXT NOT NULL UNIQUE, "timestamp" DOUBLE PRECISION NOT NULL,
            user_pseudonym TEXT NOT NULL, session_pseudonym TEXT NOT NULL, prompt TEXT NOT NULL,
            is_instrumental BOOLEAN NOT NULL, system_a TEXT NOT NULL, system_b TEXT NOT NULL,
            clip_a TEXT NOT NULL, clip_b TEXT NOT NULL, audio_a TEXT NOT NULL,
            audio_b TEXT NOT NULL,
            preference TEXT NOT NULL CHECK (preference IN ('A', 'B', 'TIE', 'BOTH_BAD')),
            listen_data_a JSONB NOT NULL, listen_data_b JSONB NOT NULL,
            total_listening_time_a DOUBLE PRECISION NOT NULL,
            total_listening_time_b DOUBLE PRECISION NOT NULL,
            apex_a JSONB, apex_b JSONB, apex_p_a DOUBLE PRECISION, apex_model_version TEXT,
            feedback TEXT, ratings_a JSONB, ratings_b JSONB,
            source TEXT NOT NULL CHECK (source IN ('live', 'simulated', 'imported')),
            imported BOOLEAN NOT NULL DEFAULT FALSE)""",
        'CREATE INDEX votes_by_voter ON votes(user_pseudonym, "timestamp")',
    ),
)
_VOTE_COLUMNS = ("row_id", *VOTE_FIELDS, "imported")


def _quote(name: str) -> str:
    return '"timestamp"' if name == "timestamp" else name


class PostgresVoteStore:
    """The PostgreSQL implementation of :class:`annotation.store.VoteStore`.

    Args:
        url: libpq connection URL, ``postgresql://user:password@host:port/dbname``.

    Raises:
        StoreError: the server cannot be reached, or its schema is newer than this code.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._con: Any = None
        self._connect()
        self._migrate()

    # ------------------------------------------------------------------ plumbing
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

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._transaction() as cur:
            cur.execute(sql, tuple(params))
            return cur.fetchall()

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
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}, newer than this code's "
                    f"{SCHEMA_VERSION}; upgrade apex-arena before opening it."
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    cur.execute(statement)
            cur.execute("DELETE FROM apex_schema")
            cur.execute("INSERT INTO apex_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._con is not None:
                self._con.close()

    def __enter__(self) -> PostgresVoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ battles and listening
    def insert_battle(self, battle: Battle) -> None:
        """Store a newly issued battle."""
        row = dataclasses.asdict(battle)
        with self._transaction() as cur:
            cur.execute(
                f"INSERT INTO battles ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                tuple(row.values()),
            )

    def get_battle(self, battle_id: str) -> Battle | None:
        """The battle with this id, or None."""
        names = [f.name for f in dataclasses.fields(Battle)]
        rows = self._read(
            f"SELECT {', '.join(names)} FROM battles WHERE battle_id = %s", (battle_id,)
        )
        return Battle(**dict(zip(names, rows[0], strict=True))) if rows else None

    def add_listen_event(self, battle_id: str, event: ListenEvent) -> None:
        """Record one play-progress event of a battle."""
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO listen_events (battle_id, side, seconds, server_time) "
                "VALUES (%s, %s, %s, %s)",
                (battle_id, event.side, event.seconds, event.server_time),
            )

    def listen_events(self, battle_id: str) -> list[ListenEvent]:
        """The battle's listen events in the order the server received them."""
        rows = self._read(
            "SELECT side, seconds, server_time FROM listen_events WHERE battle_id = %s "
            "ORDER BY event_id",
            (battle_id,),
        )
        return [ListenEvent(*row) for row in rows]

    def seen_pairs(self, session: str) -> set[frozenset[str]]:
        """Clip pairs already issued to this session pseudonym."""
        rows = self._read("SELECT clip_a, clip_b FROM battles WHERE session = %s", (session,))
        return {frozenset(row) for row in rows}

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Battles issued (or votes imported without their battle) per sorted system pair."""
        rows = self._read(
            "SELECT LEAST(system_a, system_b), GREATEST(system_a, system_b), COUNT(*) FROM ("
            " SELECT system_a, system_b FROM battles UNION ALL"
            " SELECT system_a, system_b FROM votes v"
            "  WHERE NOT EXISTS (SELECT 1 FROM battles b WHERE b.battle_id = v.battle_uuid)"
            ") AS pairs GROUP BY 1, 2"
        )
        return {(a, b): int(n) for a, b, n in rows}

    # ------------------------------------------------------------------ votes
    def insert_vote(self, vote: VoteRecord) -> bool:
        """Store a vote durably and mark its battle voted, in one transaction.

        Returns:
            True when stored; False when this vote id is already stored (idempotent retry).

        Raises:
            DuplicateVote: the battle already has a vote with another id.
        """
        return self._insert(vote, row_id=None, imported=False)

    def _insert(self, vote: VoteRecord, *, row_id: int | None, imported: bool) -> bool:
        with self._transaction(_LOCK_VOTES) as cur:
            return self._insert_in(cur, vote, row_id=row_id, imported=imported)

    def _insert_in(self, cur: Any, vote: VoteRecord, *, row_id: int | None, imported: bool) -> bool:
        """Insert inside the caller's transaction, which holds the votes lock."""
        import psycopg
        from psycopg.types.json import Jsonb

        if vote.source not in SOURCES:
            raise StoreError(f"vote source {vote.source!r} is not one of {SOURCES}.")
        if vote.preference not in PREFERENCES:
            raise StoreError(f"preference {vote.preference!r} is not one of {PREFERENCES}.")
        cur.execute("SELECT 1 FROM votes WHERE vote_id = %s", (vote.vote_id,))
        if cur.fetchone():
            return False
        # Checked before inserting (race-free under the lock): a failed statement would abort
        # the whole transaction, and an import batch must be able to skip this vote and go on.
        cur.execute("SELECT vote_id FROM votes WHERE battle_uuid = %s", (vote.battle_uuid,))
        other = cur.fetchone()
        if other:
            raise DuplicateVote(
                f"battle {vote.battle_uuid} already has a vote ({other[0]}); one vote per battle."
            )
        row = dataclasses.asdict(vote)
        for name in _JSON_FIELDS:
            row[name] = None if row[name] is None else Jsonb(row[name])
        row["imported"] = imported
        row["row_id"] = self._free_row_id(cur, row_id)
        try:
            cur.execute(
                f"INSERT INTO votes ({', '.join(map(_quote, row))}) "
                f"VALUES ({', '.join(['%s'] * len(row))})",
                tuple(row.values()),
            )
        except psycopg.errors.IntegrityError as exc:
            raise StoreError(f"vote {vote.vote_id} is not valid: {exc}.") from None
        cur.execute("UPDATE battles SET status = 'voted' WHERE battle_id = %s", (vote.battle_uuid,))
        return True

    @staticmethod
    def _free_row_id(cur: Any, wanted: int | None) -> int:
        """``wanted`` when free, else one past the largest id (called under the votes lock)."""
        if wanted is not None:
            cur.execute("SELECT 1 FROM votes WHERE row_id = %s", (wanted,))
            if not cur.fetchone():
                return int(wanted)
        cur.execute("SELECT COALESCE(MAX(row_id), 0) + 1 FROM votes")
        return int(cur.fetchone()[0])

    def import_votes(self, rows: Iterable[tuple[int | None, VoteRecord]]) -> int:
        """Add votes from another store's export, idempotently by vote id (as the SQLite store).

        Votes keep their original row id when it is free, are marked imported, and a vote whose
        battle already has another vote is skipped. They are committed in batches of
        :data:`IMPORT_BATCH`, each one transaction: an invalid vote rolls back its batch and
        raises :class:`StoreError`.

        Returns:
            How many votes were added.
        """
        added, batch = 0, []
        for item in [*rows, None]:
            if item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) >= IMPORT_BATCH):
                with self._transaction(_LOCK_VOTES) as cur:
                    for row_id, vote in batch:
                        try:
                            added += self._insert_in(cur, vote, row_id=row_id, imported=True)
                        except DuplicateVote:
                            continue
                batch = []
        return added

    def votes_frame(self, since_row: int = 0) -> pd.DataFrame:
        """Votes with ``row_id > since_row``, oldest first; the SQLite store's columns and types."""
        rows = self._read(
            f"SELECT {', '.join(map(_quote, _VOTE_COLUMNS))} FROM votes WHERE row_id > %s "
            "ORDER BY row_id",
            (int(since_row),),
        )
        frame = pd.DataFrame(rows, columns=list(_VOTE_COLUMNS))
        frame["row_id"] = frame["row_id"].astype("int64")
        for name in ("feedback", "apex_model_version", *_JSON_FIELDS):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        for name in ("apex_p_a", "timestamp", "total_listening_time_a", "total_listening_time_b"):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        frame["is_instrumental"] = frame["is_instrumental"].astype(bool)
        frame["imported"] = frame["imported"].astype(bool)
        return frame

    def vote_times(self, voter: str, since: float) -> list[float]:
        """Timestamps (Unix seconds) of this voter's votes after ``since``, oldest first."""
        rows = self._read(
            'SELECT "timestamp" FROM votes WHERE user_pseudonym = %s AND "timestamp" > %s '
            'ORDER BY "timestamp"',
            (voter, since),
        )
        return [row[0] for row in rows]

    def vote_count(self, voter: str) -> int:
        """How many votes this voter pseudonym has cast in total."""
        return self._read("SELECT COUNT(*) FROM votes WHERE user_pseudonym = %s", (voter,))[0][0]

    def max_row_id(self) -> int:
        """The largest vote row id (0 when there are no votes)."""
        return int(self._read("SELECT COALESCE(MAX(row_id), 0) FROM votes")[0][0])

    def counts(self) -> dict[str, int]:
        """Sizes: ``battles``, ``open_battles``, ``listen_events``, ``votes``, ``voters``."""
        (row,) = self._read(
            "SELECT (SELECT COUNT(*) FROM battles),"
            " (SELECT COUNT(*) FROM battles WHERE status = 'open'),"
            " (SELECT COUNT(*) FROM listen_events), (SELECT COUNT(*) FROM votes),"
            " (SELECT COUNT(DISTINCT user_pseudonym) FROM votes)"
        )
        names = ("battles", "open_battles", "listen_events", "votes", "voters")
        return {name: int(n) for name, n in zip(names, row, strict=True)}


def open_pg_store(url: str) -> PostgresVoteStore:
    """Open (creating and migrating when needed) the PostgreSQL vote store at ``url``.

    ``annotation.store.open_store`` calls this when ``APEX_DATABASE_URL`` starts with
    ``postgresql://`` or ``postgres://``.
    """
    return PostgresVoteStore(url)

"""The vote store: battles, listen events and votes in SQLite (WAL), durable once acknowledged.

Durability: WAL mode with ``synchronous=FULL`` fsyncs the log before each commit returns, so a vote
:meth:`SQLiteVoteStore.insert_vote` acknowledged survives a crash of the process *and* of the
machine. ``NORMAL`` (the usual WAL choice) survives process crashes but may drop the last commits
on power loss; FULL costs one fsync per vote (``benchmarks/store_speed.py``: hundreds per second).

Concurrency: one connection per store behind a lock serves a threaded server; processes share the
file through SQLite's locks and a busy timeout; writes take the lock up front (``BEGIN IMMEDIATE``)
so writers never deadlock upgrading a read lock. Schema: versioned by ``PRAGMA user_version``,
:data:`_MIGRATIONS` holds the statements of each version, applied in one transaction.

Callers use :class:`VoteStore`'s methods with plain records (:class:`Battle`, :class:`VoteRecord`,
:class:`~annotation.rules.ListenEvent`) and DataFrames, never SQL, so a PostgreSQL backend can be
added behind the same interface. Vote fields carry Music Arena's release names where one applies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from annotation.rules import PREFERENCES, ListenEvent
from apex.settings import Settings

SCHEMA_VERSION = 1
SOURCES: tuple[str, ...] = ("live", "simulated", "imported")
_BUSY_TIMEOUT_S = 30.0
_IMPORT_BATCH = 5000
_JSON_FIELDS = ("listen_data_a", "listen_data_b", "apex_a", "apex_b", "ratings_a", "ratings_b")

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


class StoreError(RuntimeError):
    """The vote store cannot do what was asked; the message says why and what to do."""


class DuplicateVote(StoreError):
    """The battle already has a vote (with another vote id): one vote per battle."""


@dataclass(frozen=True)
class Battle:
    """A battle as the server keeps it; the client only ever sees ``battle_id`` and the audio.

    Attributes:
        issued_at: Unix seconds when the battle was handed out.
        session: session pseudonym (never the raw session id).
        audio_a, audio_b: clip file names (relative to the pool), as released.
        status: ``"open"`` or ``"voted"``.
    """

    battle_id: str
    issued_at: float
    session: str
    clip_a: str
    clip_b: str
    system_a: str
    system_b: str
    audio_a: str
    audio_b: str
    prompt: str
    is_instrumental: bool
    status: str = "open"


@dataclass(frozen=True)
class VoteRecord:
    """One vote with everything known about it at vote time (Music Arena's names where they apply).

    Attributes:
        timestamp: Unix seconds (UTC) when the vote was accepted.
        listen_data_a, listen_data_b: server-recorded ``[seconds_claimed, server_time]`` pairs.
        total_listening_time_a, total_listening_time_b: credited listening, seconds.
        apex_a, apex_b: APEX predictions at vote time: the seven scores (+ ``"preference"`` when the
            model has one); None when no model was serving.
        apex_p_a: APEX's probability that listeners prefer clip A, or None.
        ratings_a, ratings_b: optional 1-5 ratings ``{aesthetic: value}``.
        source: ``"live"``, ``"simulated"`` or ``"imported"``.
    """

    vote_id: str
    battle_uuid: str
    timestamp: float
    user_pseudonym: str
    session_pseudonym: str
    prompt: str
    is_instrumental: bool
    system_a: str
    system_b: str
    clip_a: str
    clip_b: str
    audio_a: str
    audio_b: str
    preference: str
    listen_data_a: list[list[float]] = field(default_factory=list)
    listen_data_b: list[list[float]] = field(default_factory=list)
    total_listening_time_a: float = 0.0
    total_listening_time_b: float = 0.0
    apex_a: dict[str, float] | None = None
    apex_b: dict[str, float] | None = None
    apex_p_a: float | None = None
    apex_model_version: str | None = None
    feedback: str | None = None
    ratings_a: dict[str, int] | None = None
    ratings_b: dict[str, int] | None = None
    source: str = "live"

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> VoteRecord:
        """Build a record from a dict or DataFrame row; unknown keys are ignored, NaN means None."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: None if _is_nan(v) else v for k, v in row.items() if k in names})


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


VOTE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(VoteRecord))


class VoteStore(Protocol):
    """What the arena, export and ratings need from a vote store (any backend)."""

    def insert_battle(self, battle: Battle) -> None: ...
    def get_battle(self, battle_id: str) -> Battle | None: ...
    def add_listen_event(self, battle_id: str, event: ListenEvent) -> None: ...
    def listen_events(self, battle_id: str) -> list[ListenEvent]: ...
    def insert_vote(self, vote: VoteRecord) -> bool: ...
    def import_votes(self, rows: Iterable[tuple[int | None, VoteRecord]]) -> int: ...
    def votes_frame(self, since_row: int = 0) -> pd.DataFrame: ...
    def vote_times(self, voter: str, since: float) -> list[float]: ...
    def vote_count(self, voter: str) -> int: ...
    def pair_counts(self) -> dict[tuple[str, str], int]: ...
    def seen_pairs(self, session: str) -> set[frozenset[str]]: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class SQLiteVoteStore:
    """The SQLite implementation of :class:`VoteStore` (see the module docstring for guarantees).

    Args:
        path: database file; its folder is created when missing.
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

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
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
            return self._con.execute(sql, tuple(params)).fetchall()

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
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this code's "
                    f"{SCHEMA_VERSION}; upgrade apex-arena before opening it."
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check``; returns ``"ok"`` for a healthy file."""
        return "\n".join(row[0] for row in self._read("PRAGMA integrity_check"))

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite when the last one closes)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> SQLiteVoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ battles and listening
    def insert_battle(self, battle: Battle) -> None:
        """Store a newly issued battle."""
        row = dataclasses.asdict(battle)
        cols = ", ".join(row)
        with self._write() as con:
            con.execute(
                f"INSERT INTO battles ({cols}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )

    def get_battle(self, battle_id: str) -> Battle | None:
        """The battle with this id, or None."""
        names = [f.name for f in dataclasses.fields(Battle)]
        rows = self._read(
            f"SELECT {', '.join(names)} FROM battles WHERE battle_id = ?", (battle_id,)
        )
        if not rows:
            return None
        values = dict(zip(names, rows[0], strict=True))
        values["is_instrumental"] = bool(values["is_instrumental"])
        return Battle(**values)

    def add_listen_event(self, battle_id: str, event: ListenEvent) -> None:
        """Record one play-progress event of a battle."""
        with self._write() as con:
            con.execute(
                "INSERT INTO listen_events (battle_id, side, seconds, server_time) "
                "VALUES (?, ?, ?, ?)",
                (battle_id, event.side, event.seconds, event.server_time),
            )

    def listen_events(self, battle_id: str) -> list[ListenEvent]:
        """The battle's listen events in the order the server received them."""
        rows = self._read(
            "SELECT side, seconds, server_time FROM listen_events WHERE battle_id = ? "
            "ORDER BY event_id",
            (battle_id,),
        )
        return [ListenEvent(*row) for row in rows]

    def seen_pairs(self, session: str) -> set[frozenset[str]]:
        """Clip pairs already issued to this session pseudonym."""
        rows = self._read("SELECT clip_a, clip_b FROM battles WHERE session = ?", (session,))
        return {frozenset(row) for row in rows}

    def pair_counts(self) -> dict[tuple[str, str], int]:
        """Battles issued (or votes imported without their battle) per system pair.

        Keys are sorted ``(system, system)`` tuples, so (x, y) and (y, x) count together.
        """
        rows = self._read(
            "SELECT system_a, system_b, COUNT(*) FROM ("
            " SELECT system_a, system_b FROM battles UNION ALL"
            " SELECT system_a, system_b FROM votes"
            "  WHERE battle_uuid NOT IN (SELECT battle_id FROM battles)"
            ") GROUP BY system_a, system_b"
        )
        counts: dict[tuple[str, str], int] = {}
        for a, b, n in rows:
            key = (a, b) if a <= b else (b, a)
            counts[key] = counts.get(key, 0) + n
        return counts

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
        with self._write() as con:
            return self._insert_in(con, vote, row_id=row_id, imported=imported)

    def _insert_in(
        self, con: sqlite3.Connection, vote: VoteRecord, *, row_id: int | None, imported: bool
    ) -> bool:
        """Insert inside the caller's write transaction; see :meth:`insert_vote`."""
        if vote.source not in SOURCES:
            raise StoreError(f"vote source {vote.source!r} is not one of {SOURCES}.")
        if vote.preference not in PREFERENCES:
            raise StoreError(f"preference {vote.preference!r} is not one of {PREFERENCES}.")
        row = dataclasses.asdict(vote)
        for name in _JSON_FIELDS:
            row[name] = None if row[name] is None else json.dumps(row[name], sort_keys=True)
        row["imported"] = int(imported)
        if con.execute("SELECT 1 FROM votes WHERE vote_id = ?", (vote.vote_id,)).fetchone():
            return False
        taken = con.execute("SELECT 1 FROM votes WHERE row_id = ?", (row_id,)).fetchone()
        if row_id is not None and not taken:
            row["row_id"] = row_id
        try:
            con.execute(
                f"INSERT INTO votes ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
        except sqlite3.IntegrityError as exc:
            # A failed statement leaves the surrounding transaction intact (SQLite's default
            # ABORT resolution), so a batch import can skip this row and go on.
            if "battle_uuid" not in str(exc):
                raise StoreError(f"vote {vote.vote_id} is not valid: {exc}.") from None
            raise DuplicateVote(
                f"battle {vote.battle_uuid} already has a vote; one vote per battle ({exc})."
            ) from None
        con.execute("UPDATE battles SET status = 'voted' WHERE battle_id = ?", (vote.battle_uuid,))
        return True

    def import_votes(self, rows: Iterable[tuple[int | None, VoteRecord]]) -> int:
        """Add votes from another store's export, idempotently by vote id.

        Each vote keeps its original row id when that id is free here (so a store restored into an
        empty file numbers its votes as the original did, and its export continues the same
        sequence); it is marked imported so export does not publish it again. A vote whose battle
        already has a different vote is skipped (one vote per battle). Votes are committed in
        batches of :data:`_IMPORT_BATCH` (one fsync each), so a restore of 100k votes takes
        seconds; an invalid vote rolls back its batch and raises :class:`StoreError`.

        Returns:
            How many votes were added.
        """
        added, batch = 0, []
        for item in [*rows, None]:
            if item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) >= _IMPORT_BATCH):
                with self._write() as con:
                    for row_id, vote in batch:
                        try:
                            added += self._insert_in(con, vote, row_id=row_id, imported=True)
                        except DuplicateVote:
                            continue
                batch = []
        return added

    def votes_frame(self, since_row: int = 0) -> pd.DataFrame:
        """Votes with ``row_id > since_row``, oldest first, one row per vote.

        Columns: ``row_id``, every :class:`VoteRecord` field (JSON fields decoded to lists/dicts,
        ``is_instrumental`` as bool) and ``imported`` (bool).
        """
        with self._lock:
            frame = pd.read_sql_query(
                "SELECT * FROM votes WHERE row_id > ? ORDER BY row_id",
                self._con,
                params=(int(since_row),),
            )
        for name in _JSON_FIELDS:
            # NULLs come back as None or NaN depending on the column's other values.
            frame[name] = frame[name].map(lambda v: json.loads(v) if isinstance(v, str) else None)
        for name in ("feedback", "apex_model_version"):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        frame["is_instrumental"] = frame["is_instrumental"].astype(bool)
        frame["imported"] = frame["imported"].astype(bool)
        return frame

    def vote_times(self, voter: str, since: float) -> list[float]:
        """Timestamps (Unix seconds) of this voter's votes after ``since``, oldest first."""
        rows = self._read(
            "SELECT timestamp FROM votes WHERE user_pseudonym = ? AND timestamp > ? "
            "ORDER BY timestamp",
            (voter, since),
        )
        return [row[0] for row in rows]

    def vote_count(self, voter: str) -> int:
        """How many votes this voter pseudonym has cast in total."""
        return self._read("SELECT COUNT(*) FROM votes WHERE user_pseudonym = ?", (voter,))[0][0]

    def max_row_id(self) -> int:
        """The largest vote row id (0 when there are no votes)."""
        return self._read("SELECT COALESCE(MAX(row_id), 0) FROM votes")[0][0]

    def counts(self) -> dict[str, int]:
        """Sizes: ``battles``, ``open_battles``, ``listen_events``, ``votes``, ``voters``."""
        (row,) = self._read(
            "SELECT (SELECT COUNT(*) FROM battles),"
            " (SELECT COUNT(*) FROM battles WHERE status = 'open'),"
            " (SELECT COUNT(*) FROM listen_events), (SELECT COUNT(*) FROM votes),"
            " (SELECT COUNT(DISTINCT user_pseudonym) FROM votes)"
        )
        return dict(
            zip(("battles", "open_battles", "listen_events", "votes", "voters"), row, strict=True)
        )


def open_store(settings: Settings) -> VoteStore:
    """Open (creating and migrating when needed) the vote store the settings point at.

    ``APEX_DATABASE_URL`` unset or ``sqlite:///PATH`` gives SQLite; ``postgresql://...`` gives the
    PostgreSQL store (:mod:`annotation.store_pg`), for several app replicas sharing one store.

    Raises:
        StoreError: ``APEX_DATABASE_URL`` names a backend this version does not have.
    """
    url = settings.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        from annotation.store_pg import open_pg_store

        return open_pg_store(url)
    if url and not url.startswith("sqlite:"):
        raise StoreError(
            f"APEX_DATABASE_URL={url.split(':', 1)[0]}:... is not a supported backend; use "
            "postgresql://... or sqlite:///PATH, or unset it for SQLite in the data directory."
        )
    path = url.removeprefix("sqlite:///") if url else settings.store_path
    return SQLiteVoteStore(path)

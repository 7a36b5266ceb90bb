"""The vote-store tables (:func:`migrations`, per schema version and dialect) and queries
(:class:`SQLVoteStore`, on a few backend hooks; the SQL uses ``?`` markers) both SQL backends share.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, suppress
from typing import Any, ClassVar, TypeVar

import pandas as pd

from annotation.rules import ListenEvent
from annotation.store.records import (
    BATTLE_FIELDS,
    BATTLE_STATUSES,
    BOOL_FIELDS,
    FLOAT_FIELDS,
    JSON_FIELDS,
    MAYBE_BOOL_FIELDS,
    NULLABLE_TEXT_FIELDS,
    SCHEMA_VERSION,
    SOURCES,
    VOTE_FIELDS,
    Battle,
    DuplicateVote,
    StoreError,
    VoteRecord,
)
from apex.tasks import PREFERENCES, SIDES

#: Words that differ per backend: (SQLite, PostgreSQL). SQLite's AUTOINCREMENT never reuses a
#: number, so export ranges stay append-only; PostgreSQL's votes are numbered under its votes lock.
_DIALECTS: dict[str, tuple[str, str]] = {
    "real": ("REAL", "DOUBLE PRECISION"),
    "boolean": ("INTEGER", "BOOLEAN"),
    "json": ("TEXT", "JSONB"),
    "false": ("0", "FALSE"),
    "event_id": (
        "event_id INTEGER PRIMARY KEY AUTOINCREMENT",
        "event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    ),
    "row_id": ("row_id INTEGER PRIMARY KEY AUTOINCREMENT", "row_id BIGINT PRIMARY KEY"),
    "timestamp": ("timestamp", '"timestamp"'),  # PostgreSQL quotes the keyword
}
SQLITE = {key: pair[0] for key, pair in _DIALECTS.items()}
POSTGRES = {key: pair[1] for key, pair in _DIALECTS.items()}


def one_of(column: str, values: Iterable[str]) -> str:
    """``column TEXT NOT NULL CHECK (column IN ('v1', 'v2'))``: the column takes only ``values``."""
    values = tuple(values)
    if any("'" in value for value in values):
        raise ValueError(f"{column}: a quote in {values} would break the CHECK constraint")
    return f"{column} TEXT NOT NULL CHECK ({column} IN ({', '.join(repr(v) for v in values)}))"


def migrations(d: Mapping[str, str]) -> tuple[tuple[str, ...], ...]:
    """The statements of each schema version (index 0 is version 1) in dialect ``d``
    (:data:`SQLITE` or :data:`POSTGRES`); each ``CHECK`` is built from the vocabulary."""
    real, boolean, json, false = (d[key] for key in ("real", "boolean", "json", "false"))
    status = one_of("status", BATTLE_STATUSES).replace(
        "NOT NULL", f"NOT NULL DEFAULT '{BATTLE_STATUSES[0]}'", 1
    )
    version_1 = (
        f"""CREATE TABLE battles (
            battle_id TEXT PRIMARY KEY, issued_at {real} NOT NULL, session TEXT NOT NULL,
            clip_a TEXT NOT NULL, clip_b TEXT NOT NULL, system_a TEXT NOT NULL,
            system_b TEXT NOT NULL, audio_a TEXT NOT NULL, audio_b TEXT NOT NULL,
            prompt TEXT NOT NULL, is_instrumental {boolean} NOT NULL, {status})""",
        "CREATE INDEX battles_by_session ON battles(session)",
        f"""CREATE TABLE listen_events (
            {d["event_id"]}, battle_id TEXT NOT NULL, {one_of("side", SIDES)},
            seconds {real} NOT NULL, server_time {real} NOT NULL)""",
        "CREATE INDEX listen_by_battle ON listen_events(battle_id)",
        f"""CREATE TABLE votes (
            {d["row_id"]}, vote_id TEXT NOT NULL UNIQUE,
            battle_uuid TEXT NOT NULL UNIQUE, {d["timestamp"]} {real} NOT NULL,
            user_pseudonym TEXT NOT NULL, session_pseudonym TEXT NOT NULL, prompt TEXT NOT NULL,
            is_instrumental {boolean} NOT NULL, system_a TEXT NOT NULL, system_b TEXT NOT NULL,
            clip_a TEXT NOT NULL, clip_b TEXT NOT NULL, audio_a TEXT NOT NULL,
            audio_b TEXT NOT NULL, {one_of("preference", PREFERENCES)},
            listen_data_a {json} NOT NULL, listen_data_b {json} NOT NULL,
            total_listening_time_a {real} NOT NULL, total_listening_time_b {real} NOT NULL,
            apex_a {json}, apex_b {json}, apex_p_a {real}, apex_model_version TEXT,
            feedback TEXT, ratings_a {json}, ratings_b {json}, {one_of("source", SOURCES)},
            imported {boolean} NOT NULL DEFAULT {false})""",
        f"CREATE INDEX votes_by_voter ON votes(user_pseudonym, {d['timestamp']})",
    )
    # version 2: what the clips sounded like, vote-quality flags, sign-in
    added = {
        "loudness_a": real,
        "loudness_b": real,
        "loudness_matched": boolean,
        "duration_a": real,
        "duration_b": real,
        "instrumental_a": boolean,
        "instrumental_b": boolean,
        "flags": "TEXT NOT NULL DEFAULT ''",
        "signed_in": f"{boolean} NOT NULL DEFAULT {false}",
    }
    version_2 = tuple(f"ALTER TABLE votes ADD COLUMN {name} {kind}" for name, kind in added.items())
    version_3 = ("ALTER TABLE votes ADD COLUMN pool TEXT",)  # where the clips came from
    return (version_1, version_2, version_3)


IMPORT_BATCH = 5000  # votes per import transaction (one commit, and one fsync, each)
_VOTE_COLUMNS = ("row_id", *VOTE_FIELDS, "imported")
_COUNT_NAMES = ("battles", "open_battles", "listen_events", "votes", "voters")
_Store = TypeVar("_Store", bound="SQLVoteStore")  # typing.Self needs Python 3.11


def _quote(name: str) -> str:
    # "timestamp" is a type name in PostgreSQL; SQLite accepts the quoted identifier too.
    return '"timestamp"' if name == "timestamp" else name


def _insert_sql(table: str, columns: Iterable[str]) -> str:
    names = [_quote(name) for name in columns]
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


class SQLVoteStore(ABC):
    """What a vote store offers (:data:`annotation.store.VoteStore`, any backend); subclasses
    open ``_con`` and supply the hooks."""

    _PARAM: ClassVar[str] = "?"  # the driver's parameter marker, replacing the SQL's ``?``
    _MIGRATIONS: ClassVar[tuple[tuple[str, ...], ...]]
    _con: Any
    _lock: Any  # a threading.RLock guarding _con

    @abstractmethod
    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """All rows of one query (``sql`` with ``?`` markers, run through :meth:`_execute`)."""

    @abstractmethod
    def _write(self, *, votes: bool = False) -> AbstractContextManager[Any]:
        """A cursor in one write transaction; ``votes``: the transaction writes votes."""

    @abstractmethod
    def _integrity_error(self) -> type[Exception]:
        """The driver's exception for a violated constraint (NOT NULL, UNIQUE, CHECK)."""

    def _encode_json(self, value: Any) -> Any:
        """A list or dict as the driver stores it in a JSON column (here: text)."""
        return json.dumps(value, sort_keys=True)

    def _next_row_id(self, cur: Any) -> int | None:
        """The row id of a new vote, or None to let the database number it (AUTOINCREMENT)."""
        return None

    def _execute(self, cur: Any, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run ``sql`` (``?`` markers) on a connection or cursor; returns the cursor."""
        if self._PARAM != "?":
            sql = sql.replace("?", self._PARAM)
        return cur.execute(sql, tuple(params))

    def _apply_migrations(self, cur: Any, version: int, where: str) -> None:
        """Bring a schema at ``version`` to :data:`SCHEMA_VERSION` inside the caller's transaction
        (StoreError when ``where``, the file or database, has a newer one)."""
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{where} has schema version {version}, newer than this code's "
                f"{SCHEMA_VERSION}; upgrade apex-arena before opening it."
            )
        for statements in self._MIGRATIONS[version:]:
            for statement in statements:
                cur.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._con.close()

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def insert_battle(self, battle: Battle) -> None:
        """Store a newly issued battle."""
        row = dataclasses.asdict(battle)
        with self._write() as cur:
            self._execute(cur, _insert_sql("battles", row), row.values())

    def get_battle(self, battle_id: str) -> Battle | None:
        """The battle with this id, or None."""
        rows = self._read(
            f"SELECT {', '.join(BATTLE_FIELDS)} FROM battles WHERE battle_id = ?", (battle_id,)
        )
        if not rows:
            return None
        values = dict(zip(BATTLE_FIELDS, rows[0], strict=True))
        values["is_instrumental"] = bool(values["is_instrumental"])  # SQLite keeps 0/1
        return Battle(**values)

    def add_listen_event(self, battle_id: str, event: ListenEvent) -> None:
        """Record one play-progress event of a battle."""
        sql = _insert_sql("listen_events", ("battle_id", "side", "seconds", "server_time"))
        with self._write() as cur:
            self._execute(cur, sql, (battle_id, event.side, event.seconds, event.server_time))

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
        """Battles issued (or votes imported without their battle) per system pair, keyed by
        the sorted ``(system, system)`` (sorted in Python, as the sampler's ``pair_key``)."""
        rows = self._read(
            "SELECT system_a, system_b, COUNT(*) FROM ("
            " SELECT system_a, system_b FROM battles UNION ALL"
            " SELECT system_a, system_b FROM votes v"
            "  WHERE NOT EXISTS (SELECT 1 FROM battles b WHERE b.battle_id = v.battle_uuid)"
            ") AS pairs GROUP BY system_a, system_b"
        )
        counts: Counter[tuple[str, str]] = Counter()
        for a, b, n in rows:
            counts[(a, b) if a <= b else (b, a)] += int(n)
        return dict(counts)

    def insert_vote(self, vote: VoteRecord) -> bool:
        """Store a vote durably and mark its battle voted, in one transaction; False when this
        vote id is already stored (an idempotent retry). DuplicateVote when the battle has a vote
        with another id; StoreError for an invalid vote (unknown source or preference, missing
        field)."""
        with self._write(votes=True) as cur:
            return self._insert_in(cur, vote, row_id=None, imported=False)

    def _insert_in(self, cur: Any, vote: VoteRecord, *, row_id: int | None, imported: bool) -> bool:
        """Insert inside the caller's vote write transaction; see :meth:`insert_vote`."""
        if self._execute(cur, "SELECT 1 FROM votes WHERE vote_id = ?", (vote.vote_id,)).fetchone():
            return False
        other = self._execute(
            cur, "SELECT vote_id FROM votes WHERE battle_uuid = ?", (vote.battle_uuid,)
        ).fetchone()
        if other:
            raise DuplicateVote(
                f"battle {vote.battle_uuid} already has a vote ({other[0]}); one vote per battle."
            )
        row = dataclasses.asdict(vote)
        for name in JSON_FIELDS:
            row[name] = None if row[name] is None else self._encode_json(row[name])
        row["imported"] = imported
        taken = "SELECT 1 FROM votes WHERE row_id = ?"
        if row_id is None or self._execute(cur, taken, (row_id,)).fetchone():
            row_id = self._next_row_id(cur)  # under the votes lock
        if row_id is not None:
            row["row_id"] = int(row_id)
        try:
            self._execute(cur, _insert_sql("votes", row), row.values())
        except self._integrity_error() as exc:  # a CHECK names an unknown source or preference
            raise StoreError(f"vote {vote.vote_id} is not valid: {exc}.") from None
        self._execute(
            cur, "UPDATE battles SET status = 'voted' WHERE battle_id = ?", (vote.battle_uuid,)
        )
        return True

    def import_votes(self, rows: Iterable[tuple[int | None, VoteRecord]]) -> int:
        """Add votes from another store's export, idempotently by vote id; returns how many.
        Each keeps its row id when free here (a restored store continues the export sequence)
        and is marked imported (never exported again); a vote whose battle has another vote is
        skipped. An invalid vote rolls back its batch and raises :class:`StoreError`."""
        added, pending = 0, iter(rows)
        while batch := list(itertools.islice(pending, IMPORT_BATCH)):
            with self._write(votes=True) as cur:
                for row_id, vote in batch:
                    with suppress(DuplicateVote):  # the battle has another vote: skipped
                        added += self._insert_in(cur, vote, row_id=row_id, imported=True)
        return added

    def votes_frame(self, since_row: int = 0) -> pd.DataFrame:
        """Votes with ``row_id > since_row``, oldest first: ``row_id`` (int64), every
        :class:`VoteRecord` field (JSON decoded, missing values None; floats NaN) and
        ``imported``, typed the same on every backend."""
        rows = self._read(
            f"SELECT {', '.join(map(_quote, _VOTE_COLUMNS))} FROM votes WHERE row_id > ? "
            "ORDER BY row_id",
            (int(since_row),),
        )
        frame = pd.DataFrame(rows, columns=list(_VOTE_COLUMNS))
        for name in JSON_FIELDS:
            # Text (SQLite), or what the driver decoded (PostgreSQL's JSONB); NULL: None.
            frame[name] = frame[name].map(lambda v: json.loads(v) if isinstance(v, str) else v)
        for name in (*NULLABLE_TEXT_FIELDS, *JSON_FIELDS):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        for name in MAYBE_BOOL_FIELDS:  # True, False or None (SQLite keeps 0/1)
            frame[name] = frame[name].map(lambda v: None if v is None else bool(v)).astype(object)
        types = {"row_id": "int64", "flags": str, **dict.fromkeys(FLOAT_FIELDS, "float64")}
        return frame.astype({**types, **dict.fromkeys((*BOOL_FIELDS, "imported"), bool)})

    def vote_times(self, voter: str, since: float) -> list[float]:
        """Timestamps (Unix seconds) of this voter's votes after ``since``, oldest first."""
        rows = self._read(
            'SELECT "timestamp" FROM votes WHERE user_pseudonym = ? AND "timestamp" > ? '
            'ORDER BY "timestamp"',
            (voter, since),
        )
        return [row[0] for row in rows]

    def recent_votes(self, voter: str, limit: int) -> list[tuple[float, str, str, str]]:
        """This voter's last ``limit`` votes, oldest first: ``(timestamp, preference, system_a,
        system_b)``."""
        rows = self._read(
            'SELECT "timestamp", preference, system_a, system_b FROM votes '
            'WHERE user_pseudonym = ? ORDER BY "timestamp" DESC LIMIT ?',
            (voter, int(limit)),
        )
        return [(float(t), p, a, b) for t, p, a, b in reversed(rows)]

    def vote_count(self, voter: str) -> int:
        """How many votes this voter pseudonym has cast in total."""
        rows = self._read("SELECT COUNT(*) FROM votes WHERE user_pseudonym = ?", (voter,))
        return int(rows[0][0])

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
        return {name: int(n) for name, n in zip(_COUNT_NAMES, row, strict=True)}

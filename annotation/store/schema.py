"""The vote store's tables, written once for both backends; each ``CHECK`` from the vocabulary.

:func:`migrations` gives the statements per schema version in a backend's types (:data:`SQLITE`,
:data:`POSTGRES`); allowed values come from :mod:`apex.tasks` and :mod:`annotation.store.records`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from annotation.store.records import BATTLE_STATUSES, SOURCES
from apex.tasks import PREFERENCES, SIDES

#: Column types and the two column definitions that differ, per backend: (SQLite, PostgreSQL).
#: SQLite's AUTOINCREMENT never reuses a number, so export ranges stay append-only; PostgreSQL's
#: votes are numbered by the store under its votes lock.
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
#: A backend's words for :func:`migrations` (keys of ``_DIALECTS``).
Dialect = Mapping[str, str]
SQLITE: Dialect = {key: pair[0] for key, pair in _DIALECTS.items()}
POSTGRES: Dialect = {key: pair[1] for key, pair in _DIALECTS.items()}


def one_of(column: str, values: Iterable[str]) -> str:
    """``column TEXT NOT NULL CHECK (column IN ('v1', 'v2'))``: the column takes only ``values``."""
    values = tuple(values)
    if any("'" in value for value in values):
        raise ValueError(f"{column}: a quote in {values} would break the CHECK constraint")
    return f"{column} TEXT NOT NULL CHECK ({column} IN ({', '.join(repr(v) for v in values)}))"


def migrations(d: Dialect) -> tuple[tuple[str, ...], ...]:
    """The statements of each schema version (index 0 is version 1) in dialect ``d``."""
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

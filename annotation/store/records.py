"""What every vote store stores: records, vote fields and errors (backend-neutral; callers
import the names from :mod:`annotation.store`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from apex.tasks import VOTE_SOURCES

SCHEMA_VERSION = 3  # both backends migrate to it (annotation.store.sql.migrations)
SOURCES: tuple[str, ...] = VOTE_SOURCES  # where a vote came from (the CHECK on ``source``)
BATTLE_STATUSES: tuple[str, ...] = ("open", "voted")  # the first the default (a CHECK too)
#: Vote fields stored as JSON (lists and dicts).
JSON_FIELDS = ("listen_data_a", "listen_data_b", "apex_a", "apex_b", "ratings_a", "ratings_b")


class StoreError(RuntimeError):
    """The vote store cannot do what was asked; the message says why and what to do."""


class StoreClosed(StoreError):
    """The store was closed (the app is stopping) before or during a read."""


class DuplicateVote(StoreError):
    """The battle already has a vote (with another vote id): one vote per battle."""


@dataclass(frozen=True)
class Battle:
    """A battle as the server keeps it (``issued_at``: Unix seconds; ``session``: the session's
    pseudonym); the client only ever sees ``battle_id`` and the audio."""

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
    """One vote with everything known about it at vote time, under Music Arena's names where
    they apply; each field means what its released column says (``annotation.export``'s
    ``_BASE_COLUMNS``). ``apex_a``/``apex_b``: APEX's seven scores (and ``"preference"``) at vote
    time, None when no model served; ``ratings_a``/``ratings_b``: 1-5 ratings by aesthetic.
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
    loudness_a: float | None = None
    loudness_b: float | None = None
    loudness_matched: bool | None = None
    duration_a: float | None = None
    duration_b: float | None = None
    instrumental_a: bool | None = None
    instrumental_b: bool | None = None
    flags: str = ""
    signed_in: bool = False
    pool: str | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> VoteRecord:
        """Build a record from a dict or DataFrame row; unknown keys are ignored, NaN means None."""
        names = {f.name for f in dataclasses.fields(cls)}
        nan = {k for k, v in row.items() if isinstance(v, float) and math.isnan(v)}
        return cls(**{k: None if k in nan else v for k, v in row.items() if k in names})


def new_vote(
    battle: Mapping[str, Any],
    *,
    vote_id: str,
    battle_uuid: str,
    voter: str,
    timestamp: float,
    preference: str,
    source: str,
    pool: str | None,
    session: str | None = None,
    **more: Any,
) -> VoteRecord:
    """The one way to build a vote (live, simulated or imported): ``battle`` gives the fields a
    vote shares with :class:`Battle`, by name (a ``Battle`` as a dict, or a row of simulated or
    released battles); ``voter`` is the user pseudonym (and the default ``session``); ``more``:
    any other :class:`VoteRecord` field."""
    return VoteRecord(
        vote_id=vote_id,
        battle_uuid=battle_uuid,
        timestamp=float(timestamp),
        user_pseudonym=voter,
        session_pseudonym=voter if session is None else session,
        **{name: battle[name] for name in _FROM_BATTLE},
        is_instrumental=bool(battle["is_instrumental"]),
        preference=preference,
        source=source,
        pool=pool,
        **more,
    )


VOTE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(VoteRecord))
BATTLE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Battle))
#: What a vote copies from its battle by name (``is_instrumental`` is made a bool apart).
_FROM_BATTLE = tuple(n for n in BATTLE_FIELDS if n in VOTE_FIELDS and n != "is_instrumental")


def _vote_fields_typed(*kinds: object) -> tuple[str, ...]:
    hints = get_type_hints(VoteRecord)
    return tuple(name for name in VOTE_FIELDS if hints[name] in kinds)


#: Vote fields by kind, read from :class:`VoteRecord`'s annotations: the stores convert the
#: columns they read back by these, so a new field needs no list of its own there.
FLOAT_FIELDS: tuple[str, ...] = _vote_fields_typed(float, float | None)
BOOL_FIELDS: tuple[str, ...] = _vote_fields_typed(bool)
MAYBE_BOOL_FIELDS: tuple[str, ...] = _vote_fields_typed(bool | None)
NULLABLE_TEXT_FIELDS: tuple[str, ...] = _vote_fields_typed(str | None)

"""What every vote store stores and promises: records, vote fields, errors and the protocol.

Backend-neutral: :mod:`annotation.store.sqlite` and :mod:`annotation.store.pg` implement
:class:`VoteStore` on these records, and callers import the names from :mod:`annotation.store`.
Vote fields carry Music Arena's release names where one applies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, get_type_hints

import pandas as pd

from annotation.rules import ListenEvent
from apex.tasks import PREFERENCES, VOTE_SOURCES

#: The schema version both backends migrate to (each keeps its own statements per version).
#: 2 added the clips' loudness, duration and vocals, the vote-quality flags and ``signed_in``.
#: 3 added ``pool``: which clip pool (source and revision) the vote's clips came from.
SCHEMA_VERSION = 3
#: Where a vote came from (:data:`apex.tasks.VOTE_SOURCES`; the store's ``CHECK`` on ``source``
#: is built from it).
SOURCES: tuple[str, ...] = VOTE_SOURCES
#: A battle's states, the first the default (the ``CHECK`` on ``battles.status``).
BATTLE_STATUSES: tuple[str, ...] = ("open", "voted")
#: Vote fields stored as JSON (lists and dicts).
JSON_FIELDS: tuple[str, ...] = (
    "listen_data_a",
    "listen_data_b",
    "apex_a",
    "apex_b",
    "ratings_a",
    "ratings_b",
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
        loudness_a, loudness_b: integrated loudness of each clip as generated (ITU-R BS.1770-4),
            LUFS; None when unknown or silent.
        loudness_matched: whether the clips were played loudness-matched; None when unknown.
        duration_a, duration_b: length of each clip, seconds; None when unknown.
        instrumental_a, instrumental_b: whether each clip is instrumental; None when unknown.
        flags: comma-separated reasons the vote may be unreliable
            (:data:`annotation.flags.FLAG_REASONS`), "" when none; never a reason to delete it.
        signed_in: the voter was signed in with a Hugging Face account (the pseudonym is then
            the account's).
        pool: the clip pool the clips came from, source and revision
            (:func:`annotation.pool.sources.pool_identity`); None for votes from before it was
            recorded.
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
        return cls(**{k: None if _is_nan(v) else v for k, v in row.items() if k in names})


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
    """The one way to build a vote: live (the arena), simulated (``apex votes simulate``) or
    imported (Music Arena).

    Args:
        battle: the fields a vote shares with :class:`Battle` (prompt, systems, clips, audio,
            ``is_instrumental``) by name: a ``Battle`` as a dict, or a row of simulated or
            released battles.
        voter: the user pseudonym; ``session`` defaults to it (simulated and imported voters
            have no sessions).
        more: any other :class:`VoteRecord` field (listening, APEX's view, loudness, ...).
    """
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


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


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


def check_vote(vote: VoteRecord) -> None:
    """Refuse a vote whose ``source`` or ``preference`` is not a known value.

    Raises:
        StoreError: naming the bad value and the allowed ones.
    """
    if vote.source not in SOURCES:
        raise StoreError(f"vote source {vote.source!r} is not one of {SOURCES}.")
    if vote.preference not in PREFERENCES:
        raise StoreError(f"preference {vote.preference!r} is not one of {PREFERENCES}.")


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
    def recent_votes(self, voter: str, limit: int) -> list[tuple[float, str, str, str]]: ...
    def vote_count(self, voter: str) -> int: ...
    def pair_counts(self) -> dict[tuple[str, str], int]: ...
    def seen_pairs(self, session: str) -> set[frozenset[str]]: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...

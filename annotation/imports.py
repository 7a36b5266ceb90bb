"""Votes from elsewhere (Music Arena's public release) into the vote store, kept apart from ours.

Imported votes are stored through :meth:`VoteStore.import_votes` with ``source="imported"``
(never republished by our Hub export) and ids ``music-arena:<battle_uuid>`` (vote and battle)
and ``music-arena:<user_pseudonym>`` (voter): importing twice adds nothing, they never collide
with our battles nor count toward our rate limits, and boards count them only when asked
(:func:`annotation.board.select_votes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from annotation.store import VoteRecord, VoteStore, new_vote

PREFIX = "music-arena:"


@dataclass
class ImportSummary:
    """What an import did.

    Attributes:
        added: votes stored now.
        already: votes that were stored by an earlier import (same vote id).
        skipped: ``(record, reason)`` of battles that could not be read from the release.
    """

    added: int
    already: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _seconds(value: float) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


def music_arena_records(battles: pd.DataFrame, root: str | Path) -> list[VoteRecord]:
    """One :class:`VoteRecord` per battle of :attr:`ArenaRelease.battles` (``source="imported"``).

    Clip ids are the release's file stems, the ids :meth:`ClipPool.from_music_arena` gives the
    same clips, so these votes join the pool's (and its embeddings') clips; a clip whose audio was
    not released has an empty clip id and audio path (the vote still rates its system). Each
    vote's ``pool`` is the release at ``root`` and the battle's batch
    (:func:`annotation.pool.sources.pool_identity`).
    """
    from annotation.pool.sources import pool_identity

    pools = {batch: pool_identity(root, batches=(batch,)) for batch in set(battles["batch"])}
    records = []
    for row in battles.itertuples(index=False):
        voter = f"{PREFIX}{row.user_pseudonym or 'anonymous'}"
        records.append(
            new_vote(
                row._asdict(),
                vote_id=f"{PREFIX}{row.battle_uuid}",
                battle_uuid=f"{PREFIX}{row.battle_uuid}",
                voter=voter,
                timestamp=row.timestamp,
                preference=row.preference,
                source="imported",
                pool=pools[row.batch],
                total_listening_time_a=_seconds(row.total_listening_time_a),
                total_listening_time_b=_seconds(row.total_listening_time_b),
            )
        )
    return records


def import_music_arena(store: VoteStore, source: str | Path) -> ImportSummary:
    """Read a Music Arena release folder and add its votes to ``store``.

    Args:
        store: the vote store (:func:`annotation.store.open_store`).
        source: a folder in Music Arena's layout (see :mod:`apex.sources.music_arena`).

    Raises:
        apex.sources.music_arena.MusicArenaError: the folder is not in that layout.
    """
    from apex.sources.music_arena import read_release

    release = read_release(source)
    records = music_arena_records(release.battles, release.root)
    added = store.import_votes((None, record) for record in records)
    return ImportSummary(added=added, already=len(records) - added, skipped=release.skipped)

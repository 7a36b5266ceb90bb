"""Votes from Music Arena's public release into the vote store, kept apart from ours.

They are ``source="imported"`` (never republished, counted on boards only when asked), with ids
``music-arena:<battle_uuid>`` and voters ``music-arena:<user_pseudonym>``: importing twice adds
nothing, and they never collide with our battles nor count toward our rate limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from annotation.pool.sources import pool_identity
from annotation.store import VoteRecord, VoteStore, new_vote
from apex.sources.music_arena import read_release

PREFIX = "music-arena:"


@dataclass
class ImportSummary:
    """Votes ``added`` now, ``already`` stored by an earlier import (same vote id), and the
    ``(record, reason)`` of battles ``skipped`` as unreadable."""

    added: int
    already: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _seconds(value: float) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)


def music_arena_records(battles: pd.DataFrame, root: str | Path) -> list[VoteRecord]:
    """One ``source="imported"`` :class:`VoteRecord` per battle of :attr:`ArenaRelease.battles`;
    clip ids are the file stems, as in :meth:`ClipPool.from_music_arena` (empty for a clip whose
    audio was not released), and ``pool`` names the release at ``root`` and the batch."""
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
    """Add the votes of ``source``, a Music Arena release folder, to ``store`` (raises
    :class:`apex.sources.music_arena.MusicArenaError` for a folder in another layout)."""
    release = read_release(source)
    records = music_arena_records(release.battles, release.root)
    added = store.import_votes((None, record) for record in records)
    return ImportSummary(added=added, already=len(records) - added, skipped=release.skipped)

"""Votes from elsewhere (Music Arena's public release) into the vote store, kept apart from ours.

Imported votes are stored with ``source="imported"`` and namespaced ids: vote id and battle id
``music-arena:<battle_uuid>``, voter ``music-arena:<user_pseudonym>``. So:

- importing the same release twice adds nothing (idempotent by vote id);
- they never collide with our battles, nor count toward our voters' rate limits;
- they are stored through :meth:`VoteStore.import_votes`, which marks them imported, so our
  own Hub export never republishes another project's data as ours;
- every board chooses whether to count them: :func:`select_votes` is the one filter, and the
  default (``include_imported=False``) shows only our own listeners.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from annotation.store import SOURCES, VoteRecord, VoteStore, new_vote

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


def select_votes(
    votes: pd.DataFrame,
    *,
    include_imported: bool = False,
    sources: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The votes a board should count, by ``source``.

    Args:
        votes: :meth:`VoteStore.votes_frame` rows (a ``source`` column).
        include_imported: count Music Arena's (and any other imported) votes too.
        sources: explicit sources to keep (overrides ``include_imported``); e.g.
            ``("imported",)`` for a board of imported votes alone.

    Raises:
        ValueError: an unknown source name, or no ``source`` column.
    """
    if "source" not in votes.columns:
        raise ValueError("votes need a source column (live/simulated/imported)")
    if sources is None:
        sources = SOURCES if include_imported else tuple(s for s in SOURCES if s != "imported")
    sources = tuple(sources)
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown vote sources {sorted(unknown)}; use {', '.join(SOURCES)}")
    return votes[votes["source"].isin(sources)]

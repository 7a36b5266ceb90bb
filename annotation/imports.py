"""Music Arena's released votes into the store as ``source="imported"`` (never republished, on
boards only when asked). Ids ``music-arena:<battle_uuid>`` and voters ``music-arena:<pseudonym>``
make importing twice add nothing and never collide with our battles or rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotation.pool.sources import pool_identity
from annotation.store import VoteStore, new_vote
from apex.sources.music_arena import read_release

PREFIX = "music-arena:"


@dataclass
class ImportSummary:
    """Votes ``added`` now, ``already`` stored by an earlier import (same vote id), and the
    ``(record, reason)`` of battles ``skipped`` as unreadable."""

    added: int
    already: int
    skipped: list[tuple[str, str]]


def import_music_arena(store: VoteStore, folder: str | Path) -> ImportSummary:
    """Add the votes of ``folder``, a Music Arena release, to ``store`` (raises
    :class:`apex.sources.music_arena.MusicArenaError` for a folder in another layout). Clip ids
    are the file stems, as in :meth:`ClipPool.from_music_arena` (empty for a clip whose audio was
    not released); ``pool`` names the release and the batch."""
    release = read_release(folder)
    listening = ["total_listening_time_a", "total_listening_time_b"]
    battles = release.battles.fillna(dict.fromkeys(listening, 0.0))
    pools = {
        batch: pool_identity(release.root, batches=(batch,)) for batch in set(battles["batch"])
    }
    records = [
        new_vote(
            row._asdict(),
            vote_id=f"{PREFIX}{row.battle_uuid}",
            battle_uuid=f"{PREFIX}{row.battle_uuid}",
            voter=f"{PREFIX}{row.user_pseudonym or 'anonymous'}",
            timestamp=row.timestamp,
            preference=row.preference,
            source="imported",
            pool=pools[row.batch],
            total_listening_time_a=float(row.total_listening_time_a),
            total_listening_time_b=float(row.total_listening_time_b),
        )
        for row in battles.itertuples(index=False)
    ]
    added = store.import_votes((None, record) for record in records)
    return ImportSummary(added=added, already=len(records) - added, skipped=release.skipped)

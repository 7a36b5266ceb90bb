"""Monthly compaction: a closed month's (UTC) shards become one Parquet file in a push's commit,
staged in ``<export_dir>/.compact/``, verified, and moved in only after the commit. It names the
shards it replaced (:data:`annotation.card.COMPACTED_FROM`) so :func:`tidy` can finish after a kill.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from annotation.card import COMPACTED_FROM, compacted_from
from annotation.export import SHARD_DIR, ExportError, conform, shard_ranges

_STAGING = ".compact"


@dataclass(frozen=True)
class Compaction:
    """One month's staged compaction: the compacted file's repo path
    (``votes/YYYY/MM/<from>-<to>.parquet``), the verified ``staged`` file (outside ``votes/``
    until committed) and the repo paths of the shards it replaces."""

    path: str
    staged: Path
    removed: tuple[str, ...]


def tidy(folder: Path) -> list[str]:
    """Remove the shards a compacted file already holds (left by a kill after the commit);
    returns their repo paths."""
    removed = []
    for _, _, path in list(shard_ranges(Path(folder) / SHARD_DIR)):
        if not path.is_file():
            continue  # named by a compacted file seen earlier in this loop, and removed
        for name in compacted_from(path):
            if (path.parent / name).is_file():
                (path.parent / name).unlink()
                removed.append((path.parent / name).relative_to(folder).as_posix())
    return removed


def due_months(folder: Path, now: float) -> dict[str, list[Path]]:
    """``YYYY/MM -> shards`` (row order) of each month before ``now``'s with several shards."""
    current = datetime.fromtimestamp(now, timezone.utc).strftime("%Y/%m")
    months: dict[str, list[tuple[int, Path]]] = {}
    for first, _, path in shard_ranges(Path(folder) / SHARD_DIR):
        month = path.parent.relative_to(Path(folder) / SHARD_DIR).as_posix()
        if month < current:
            months.setdefault(month, []).append((first, path))
    return {m: [p for _, p in sorted(s)] for m, s in sorted(months.items()) if len(s) > 1}


def stage(folder: Path, shards: list[Path]) -> Compaction:
    """Write and verify one month's compacted file in the staging folder; ExportError when it
    reads back unlike the shards' rows (nothing is committed)."""
    folder = Path(folder)
    merged = pa.concat_tables([conform(pq.read_table(path)) for path in shards])
    name = f"{shards[0].name.split('-')[0]}-{shards[-1].name.split('-')[1]}"
    rel = (shards[0].parent / name).relative_to(folder).as_posix()
    staged = folder / _STAGING / rel.replace("/", "_")
    staged.parent.mkdir(parents=True, exist_ok=True)
    names = json.dumps([path.name for path in shards]).encode()
    pq.write_table(merged.replace_schema_metadata({COMPACTED_FROM: names}), staged)
    back = pq.read_table(staged)
    if not back.equals(merged) or len(back.column("vote_id").unique()) != back.num_rows:
        raise ExportError(f"the compacted {rel} does not read back as its shards; left alone.")
    removed = tuple(path.relative_to(folder).as_posix() for path in shards)
    return Compaction(path=rel, staged=staged, removed=removed)


def apply(folder: Path, compactions: list[Compaction]) -> None:
    """After the commit: move each compacted file into ``votes/`` and remove its shards."""
    for done in compactions:
        os.replace(done.staged, Path(folder) / done.path)
        for rel in done.removed:
            if rel != done.path:
                (Path(folder) / rel).unlink(missing_ok=True)
    shutil.rmtree(Path(folder) / _STAGING, ignore_errors=True)

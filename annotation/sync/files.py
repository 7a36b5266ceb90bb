"""The files the Hub sync handles: which may go up, adopting shards, and what the repo already
holds (the :class:`Ledger`, ``<data_dir>/hub_sync.json``: a shard goes up once, across restarts)."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

from annotation.card import CARD_FILE, SHARD_GLOB
from annotation.export import import_shards
from apex.files import atomic_path, sha256_file, write_json_atomic

if TYPE_CHECKING:
    from annotation.store import VoteStore

#: What the sync uploads: the shards and the card. Nothing else in the folder ever leaves it.
UPLOAD_PATTERNS: tuple[str, ...] = (SHARD_GLOB, CARD_FILE)
LEDGER_FILE = "hub_sync.json"

log = logging.getLogger(__name__)


class Ledger:
    """What the repo holds from this data directory: ``repo path -> {sha256, size, rows}``; tied
    to one repo id (a new repo starts an empty ledger, so everything is uploaded there)."""

    def __init__(self, path: Path, repo_id: str) -> None:
        self.path, self.repo_id = path, repo_id
        self.files: dict[str, dict[str, Any]] = {}
        self.last_push: datetime | None = None
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("repo_id") == repo_id:
                self.files = data.get("files", {})
                stamp = data.get("last_push_at")
                self.last_push = datetime.fromisoformat(stamp) if stamp else None

    def record(
        self,
        entries: dict[str, dict[str, Any]],
        *,
        removed: tuple[str, ...] = (),
        pushed_at: float | None = None,
    ) -> None:
        """Add ``entries``, drop ``removed`` paths, note the push time (Unix s); save atomically."""
        self.files.update(entries)
        for rel in removed:
            self.files.pop(rel, None)
        if pushed_at is not None:
            self.last_push = datetime.fromtimestamp(pushed_at, timezone.utc)
        stamp = self.last_push.isoformat() if self.last_push else None
        data = {"repo_id": self.repo_id, "last_push_at": stamp, "files": self.files}
        write_json_atomic(self.path, data, indent=1)


def file_entry(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """A file's ledger entry: ``{sha256, size}``, and ``rows`` for a shard."""
    digest = sha256_file(path) if sha256 is None else sha256
    entry: dict[str, Any] = {"sha256": digest, "size": path.stat().st_size}
    if path.suffix == ".parquet":
        entry["rows"] = pq.read_metadata(path).num_rows
    return entry


def local_files(folder: Path) -> dict[str, Path]:
    """Files under ``folder`` the sync may upload, by repo path (sorted: deterministic commits)."""
    found = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    keep = filter_repo_objects(
        found, allow_patterns=list(UPLOAD_PATTERNS), ignore_patterns=DEFAULT_IGNORE_PATTERNS
    )
    return {rel: found[rel] for rel in keep}


def adopt_shards(folder: Path, export_dir: Path, *, move: bool) -> list[str]:
    """Move or copy the shards under ``folder`` into ``export_dir`` where their path is free
    (shards are never overwritten); returns the repo paths adopted."""
    adopted = []
    for rel, path in local_files(folder).items():
        dest = export_dir / rel
        if rel == CARD_FILE or dest.exists():
            continue
        try:  # appears whole, for the exporter and the sync; never replaces a shard
            with atomic_path(dest, exclusive=True) as tmp:
                shutil.copy2(path, tmp)
        except FileExistsError:
            continue  # another writer took the name meanwhile: its shard stays
        if move:
            path.unlink()
        adopted.append(rel)
    return adopted


def restore_from_folder(store: VoteStore, folder: Path, *, export_dir: Path | None = None) -> int:
    """Import every ``votes/**/*.parquet`` shard under ``folder`` (the dataset repo's layout),
    idempotent by vote id, and copy those ``export_dir`` lacks there: imported votes are never
    exported again, so this is how they reach the Hub. Returns how many votes were added;
    FileNotFoundError when ``folder`` is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds votes/.")
    added = int(import_shards(store, folder))
    if export_dir is not None:
        adopt_shards(folder, Path(export_dir), move=False)
    return added


def files_to_upload(folder: Path, ledger: Ledger, warned: set[str]) -> dict[str, dict[str, Any]]:
    """``repo path -> ledger entry`` of every file in ``folder`` the repo lacks; a shard changed
    after its upload is logged once (``warned`` remembers it), not uploaded again (append-only)."""
    entries: dict[str, dict[str, Any]] = {}
    for rel, path in local_files(folder).items():
        known, size = ledger.files.get(rel), path.stat().st_size
        if rel != CARD_FILE and known is not None:
            if known["size"] != size and rel not in warned:
                warned.add(rel)
                log.error(
                    "Shard %s changed after it was uploaded; it is not uploaded again (shards "
                    "are append-only). Move it aside so the exporter writes new shards.",
                    rel,
                )
            continue
        sha = sha256_file(path)
        if known is not None and known["sha256"] == sha:
            continue  # the card, unchanged
        entries[rel] = file_entry(path, sha)
    return entries

"""One push round's work: export new votes, pick the files the repo lacks, commit them.

A shard the ledger (:class:`annotation.sync.files.Ledger`) says the repo holds is never uploaded
again; only the dataset card (``README.md``) is refreshed when its content changed. The one kind
of delete is a compaction's (:mod:`annotation.sync.compact`): in the same commit that adds the
compacted file holding every row of the shards it deletes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete

from annotation.card import build_card, stats_from_shards, write_dataset_card
from annotation.sync.compact import Compaction
from annotation.sync.files import Ledger, file_entry, local_files
from apex.files import sha256_file
from apex.settings import Settings

if TYPE_CHECKING:
    from annotation.store import VoteStore

log = logging.getLogger(__name__)
CARD = "README.md"


def export_with_card(
    store: VoteStore,
    settings: Settings,
    repo_id: str | None,
    card_for: tuple[str, ...] | None,
) -> tuple[str, ...]:
    """Export new votes to shards and rewrite the card when the set of shards changed.

    Returns:
        The shard paths the card now describes (pass back as ``card_for`` next round).
    """
    from annotation.export import export_shards

    folder = settings.export_dir
    export_shards(store, folder)
    shards = tuple(rel for rel in local_files(folder) if rel != CARD)
    if shards != card_for or not (folder / CARD).is_file():
        write_dataset_card(
            folder, build_card(stats_from_shards(folder), repo_id=repo_id, settings=settings)
        )
    return shards


def files_to_upload(folder: Path, ledger: Ledger, warned: set[str]) -> dict[str, dict[str, Any]]:
    """``repo path -> ledger entry`` of every file in ``folder`` the repo does not hold yet.

    A shard that changed after it was uploaded is logged once (``warned`` remembers it) and not
    uploaded again: shards are append-only.
    """
    entries: dict[str, dict[str, Any]] = {}
    for rel, path in local_files(folder).items():
        known, size = ledger.files.get(rel), path.stat().st_size
        if rel != CARD and known is not None:
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


def commit_files(
    api: Any,
    repo_id: str,
    folder: Path,
    entries: dict[str, dict[str, Any]],
    compactions: list[Compaction] = (),  # type: ignore[assignment]
) -> Any:
    """One ``HfApi.create_commit``: add ``entries`` (paths relative to ``folder``) and carry out
    ``compactions`` (add each compacted file, delete the shards it holds) together.

    Only the operations the repo still needs are sent: a compacted file the repo already has, or
    a shard it no longer has (a compaction committed before a kill), is left out.
    """
    operations: list[Any] = [
        CommitOperationAdd(path_in_repo=rel, path_or_fileobj=folder / rel) for rel in entries
    ]
    months = []
    if compactions:
        held = set(api.list_repo_files(repo_id, repo_type="dataset"))
        for done in compactions:
            if done.path not in held:
                operations.append(CommitOperationAdd(done.path, done.staged))
            operations += [CommitOperationDelete(rel) for rel in done.removed if rel in held]
            months.append(f"{done.path} from {len(done.removed)} shards")
    if not operations:
        return None
    votes = sum(e.get("rows", 0) for e in entries.values())
    message = f"Add {votes} votes ({len(entries)} files)"
    message += f"; compact {', '.join(months)}" if months else ""
    return api.create_commit(
        repo_id=repo_id, repo_type="dataset", operations=operations, commit_message=message
    )

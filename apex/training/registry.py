"""Versioned model directories (``v0001-20260101T000000Z/``: model files, ``metadata.json``,
``metrics.json``, ``README.md``), a ``CHAMPION`` file naming one, and its copy on the Hub
(``APEX_MODEL_REPO``: a Space's disk is wiped at restart). Importable without torch."""

from __future__ import annotations

import json
import logging
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

from apex.files import atomic_dir, write_text_atomic
from apex.hub_files import hub_errors, hub_reachable, list_directory
from apex.settings import Settings

log = logging.getLogger(__name__)

CHAMPION_FILE = "CHAMPION"
#: The Hub model repo's champion pointer, ``{"version", "path"}``; one commit per promotion holds
#: it and ``versions/<version>/``.
POINTER = "champion.json"
#: The local record of a version's commit in the model repo (kept out of the upload).
HUB_RECORD = "hub.json"


class ModelRegistry:
    """Versioned model directories under ``root`` plus the ``CHAMPION`` pointer."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def new_version(self) -> Path:
        """Create and return the next version directory (``vNNNN-<UTC time>``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        names = [p.name for p in self.root.iterdir() if p.is_dir()]
        numbers = [int(n[1:5]) for n in names if n[:1] == "v" and n[1:5].isdigit()]
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.root / f"v{max(numbers, default=0) + 1:04d}-{stamp}"
        path.mkdir()
        return path

    def champion(self) -> Path | None:
        """The champion's directory, or None when there is none (or it vanished)."""
        pointer = self.root / CHAMPION_FILE
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        return path if path.is_dir() else None

    def promote(self, version: Path) -> None:
        """Point ``CHAMPION`` at ``version``; readers see the old or the new name, never half."""
        write_text_atomic(self.root / CHAMPION_FILE, Path(version).name + "\n")

    def gate_record(self, version: str | Path) -> dict[str, Any] | None:
        """The gate's record of ``version`` (``metrics.json``), or None when it has none."""
        path = self.root / Path(version).name / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else None


def registry_for(settings: Settings) -> ModelRegistry:
    """The app's registry: ``settings.models_dir / "refits"``."""
    return ModelRegistry(settings.models_dir / "refits")


def champion_of(settings: Settings) -> Path | None:
    """The directory of the registry's champion for ``settings``, or None when there is none."""
    return registry_for(settings).champion()


# ---------------------------------------------------------------------------- the Hub copy
# Hub trouble never raises: the returned sentence says so.
def hub_record(version: Path) -> dict[str, Any] | None:
    """``{repo_id, revision, how, at}`` of a version pushed to or restored from the Hub, or None."""
    path = Path(version) / HUB_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def record_commit(version: Path, repo_id: str, revision: str, how: str) -> None:
    """Write ``hub.json``: the model repo's commit that holds ``version`` (pushed or restored)."""
    data = {"repo_id": repo_id, "revision": revision, "how": how, "at": time.time()}
    write_text_atomic(version / HUB_RECORD, json.dumps(data, indent=1) + "\n")


def push_version(directory: Path, repo_id: str | None, *, api: Any = None) -> str:
    """Commit promoted version ``directory`` and the champion pointer to ``repo_id`` (recorded in
    ``hub.json``); returns what happened, in words (the local version stays the truth)."""
    if not repo_id:
        return "push skipped: no model repo configured (APEX_MODEL_REPO)"
    from huggingface_hub import CommitOperationAdd, HfApi

    directory = Path(directory)
    prefix = f"versions/{directory.name}"
    operations = [
        CommitOperationAdd(path_in_repo=f"{prefix}/{rel}", path_or_fileobj=directory / rel)
        for rel in list_directory(directory)
        if rel != HUB_RECORD
    ]
    pointer = json.dumps({"version": directory.name, "path": prefix}).encode()
    operations.append(CommitOperationAdd(path_in_repo=POINTER, path_or_fileobj=pointer))
    try:
        api = api or HfApi()
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.create_commit(
            repo_id=repo_id,
            repo_type="model",
            operations=operations,
            commit_message=f"Promote {directory.name}",
        )
    except hub_errors() as err:  # offline, no token, no permission: report, keep the local copy
        return (
            f"push to {repo_id} failed ({type(err).__name__}: {err}); the version is kept "
            "locally (a Space loses it at its next restart)"
        )
    record_commit(directory, repo_id, info.oid, "pushed")
    return f"pushed {directory.name} and the champion pointer to {repo_id}@{info.oid[:12]}"


def restore_champion(settings: Settings) -> str:
    """Make the model repo's champion the local one when the registry has none (through the Hub
    cache: resumable, offline when cached); returns a sentence for the About tab ("": no-op)."""
    registry = registry_for(settings)
    repo_id = settings.model_repo
    if not repo_id or registry.champion() is not None:
        return ""
    from huggingface_hub import errors, snapshot_download

    online = hub_reachable()
    fetch = partial(snapshot_download, repo_id, local_files_only=not online)
    try:
        head = Path(fetch(allow_patterns=[POINTER]))
        revision = head.name  # the snapshot folder is named by its commit
        if not (head / POINTER).is_file():
            return f"No champion in {repo_id} yet: nothing to restore."
        name = json.loads((head / POINTER).read_text())["version"]
        target = registry.root / name
        if not target.is_dir():
            prefix = f"versions/{name}"
            snap = Path(fetch(revision=revision, allow_patterns=[f"{prefix}/*"]))
            with atomic_dir(target) as tmp:
                for rel in list_directory(snap / prefix):
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(snap / prefix / rel, tmp / rel)  # the cache holds symlinks
                record_commit(tmp, repo_id, revision, "restored")
    except errors.LocalEntryNotFoundError as err:  # offline and not cached (before its base class)
        return _not_restored(repo_id, online, err)
    except (errors.RepositoryNotFoundError, errors.EntryNotFoundError):
        return f"No champion in {repo_id} yet: nothing to restore."
    except (*hub_errors(), KeyError) as err:
        return _not_restored(repo_id, online, err)
    registry.promote(target)
    log.info("Restored champion %s from %s@%s.", name, repo_id, revision)
    return f"Champion {name} restored from {repo_id} at commit {revision[:12]}."


def _not_restored(repo_id: str, online: bool, err: BaseException) -> str:
    why = "the Hub cannot be reached" if not online else f"{type(err).__name__}: {err}"
    log.warning("Champion not restored from %s (%s).", repo_id, why)
    return (
        f"The champion in {repo_id} could not be restored ({why}); the published model "
        "serves until it can be (the next start tries again)."
    )

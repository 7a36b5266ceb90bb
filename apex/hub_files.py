"""Which files of a Hub repo (or a local copy of one) to read, and getting only those: the
Hugging Face cache first (a Space's ``preload_from_hub``), the network only for a missing picked
file, after a quick probe (an offline start never waits on retries)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

#: Listing (relative POSIX paths) -> the files to use; raises :class:`SnapshotUnavailable`.
Picker = Callable[[Sequence[str]], list[str]]


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the repo cannot be had now (not a bug): HTTP, connection,
    timeout, offline and disk errors, an invalid repo id (any other ``ValueError`` is a bug).
    ``HfHubHTTPError.__bases__`` names the HTTP library's base error, whichever it is."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    return (OSError, HFValidationError, *HfHubHTTPError.__bases__)


class SnapshotUnavailable(LookupError):
    """The wanted files are neither in the local cache nor downloadable; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    """The picked ``files`` (relative to ``directory``) of one repo revision; ``repo_id`` and
    ``revision`` None for a plain local directory; ``from_cache``: no network was used."""

    directory: Path
    files: tuple[str, ...]
    repo_id: str | None
    revision: str | None
    from_cache: bool

    def path(self, name: str) -> Path:
        """Local path of picked file ``name``."""
        return self.directory / name


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the Hub refuses a TCP connection within
    ``timeout_s`` seconds (huggingface_hub itself retries for about a minute per file)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def list_directory(directory: Path) -> list[str]:
    """Files under ``directory`` (recursive) as sorted relative POSIX paths; dot-folders skipped."""
    files = (path.relative_to(directory) for path in directory.rglob("*") if path.is_file())
    return sorted(f.as_posix() for f in files if not any(p.startswith(".") for p in f.parts[:-1]))


def read_json_object(path: Path, error: type[Exception]) -> dict[str, Any]:
    """A JSON file holding an object (``config.json``...); ``error`` if unreadable or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise error(f"cannot read {path}: {type(err).__name__}: {err}; download it again.") from err
    if not isinstance(data, dict):
        raise error(f"{path} holds a {type(data).__name__}, not a JSON object.")
    return data


def from_directory(directory: Path, pick: Picker) -> Snapshot:
    """Pick files from a local directory (a cache snapshot keeps its revision)."""
    files = pick(list_directory(directory))
    revision = directory.name if directory.parent.name == "snapshots" else None
    return Snapshot(directory, tuple(files), None, revision, True)


def is_repo_id(text: str) -> bool:
    """True for ``owner/name`` (one slash, not a path that exists, not relative/absolute)."""
    return (
        text.count("/") == 1
        and not text.startswith((".", "/", "~"))
        and not Path(text).expanduser().exists()
    )


def open_snapshot(spec: str | Path, pick: Picker, *, local_files_only: bool) -> Snapshot:
    """The files ``pick`` chooses of a local directory or of a Hub repo id: from the local cache
    if there, else (unless ``local_files_only``) the Hub; :class:`SnapshotUnavailable` when
    ``spec`` is neither or the files cannot be had (giving both reasons)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    path, repo_id = Path(spec).expanduser(), str(spec)
    if path.is_dir():
        return from_directory(path, pick)
    if not is_repo_id(repo_id):
        raise SnapshotUnavailable(
            f"{spec!s} is neither a model directory nor a Hub id (owner/name)."
        )
    try:
        # Only config.json: the listing decides the rest (a partial preload is not refused).
        cached = snapshot_download(repo_id, local_files_only=True, allow_patterns=["config.json"])
        return replace(from_directory(Path(cached), pick), repo_id=repo_id)
    except LocalEntryNotFoundError as err:
        cache_reason = f"not in the local Hugging Face cache ({err.__class__.__name__})"
    except SnapshotUnavailable as err:
        cache_reason = f"the cached snapshot is incomplete: {err}"
    if local_files_only or not hub_reachable():
        raise SnapshotUnavailable(
            f"{repo_id}: {cache_reason}; offline (the Hugging Face Hub is not reachable from here)."
        )
    try:
        info = HfApi().model_info(repo_id)
        files = pick([s.rfilename for s in info.siblings or []])
        directory = snapshot_download(repo_id, revision=info.sha, allow_patterns=files)
    except SnapshotUnavailable as err:
        raise SnapshotUnavailable(f"{repo_id} on the Hub: {err}") from err
    except hub_errors() as err:  # HTTP, auth, timeouts, disk: all mean "cannot have it now"
        raise SnapshotUnavailable(
            f"{repo_id}: {cache_reason}, and downloading it failed ({type(err).__name__}: {err})."
        ) from err
    return Snapshot(Path(directory), tuple(files), repo_id, info.sha, False)

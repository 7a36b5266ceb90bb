"""Which files of a Hub repo (or a local copy of one) to read, and getting only those.

A Space's ``preload_from_hub`` puts repos into the Hugging Face cache at build time, laid out as
``$HF_HUB_CACHE/models--<owner>--<name>/snapshots/<revision>/<file>`` with ``refs/main`` naming the
revision. :func:`fetch_snapshot` looks there first (``local_files_only``: no network round trip),
lists what the snapshot holds, lets the caller pick the files it needs from that listing, and goes
to the network only when the snapshot is missing or lacks a picked file (after a quick probe, so
an offline start-up never waits on retries): it lists the repo
(``model_info``), picks again, and downloads exactly the picked files (``allow_patterns``), so a
repo's other large files (MERT's 1.32 GB fairseq ``.pt``) are never fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: A picker gets a listing (relative POSIX paths) and returns the files to use, or raises
#: :class:`SnapshotUnavailable` saying what the listing lacks.
Picker = Callable[[Sequence[str]], list[str]]


def hub_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the repo cannot be had now (not a bug): HTTP errors (missing,
    gated, no token, no permission), refused connections and timeouts, offline mode, disk errors,
    an invalid repo id.

    ``HfHubHTTPError`` derives from ``OSError`` and from the HTTP library's base error, which is
    also what a connection or timeout error raises before any response; naming that base through
    ``HfHubHTTPError.__bases__`` keeps this right whichever HTTP library the Hub client uses.
    """
    from huggingface_hub.errors import HfHubHTTPError

    return (OSError, ValueError, *HfHubHTTPError.__bases__)


class SnapshotUnavailable(LookupError):
    """The wanted files are neither in the local cache nor downloadable; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    """Local files of one repo revision.

    Attributes:
        directory: the folder holding the files (a cache snapshot or a local directory).
        files: the picked files, relative to ``directory``.
        repo_id: the Hub repo id, or None for a plain local directory.
        revision: the commit hash (cache snapshots and downloads), or None when unknown.
        from_cache: True when no network was used.
    """

    directory: Path
    files: tuple[str, ...]
    repo_id: str | None
    revision: str | None
    from_cache: bool

    def path(self, name: str) -> Path:
        """Local path of picked file ``name``."""
        return self.directory / name


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the Hub endpoint does not accept a TCP connection
    within ``timeout_s`` seconds. Probing first matters: huggingface_hub retries unreachable hosts
    with back-off for about a minute per file, far too long for an offline start-up."""
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
    out = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts[:-1]):
            out.append(rel.as_posix())
    return sorted(out)


def is_repo_id(text: str) -> bool:
    """True for ``owner/name`` (one slash, not a path that exists, not relative/absolute)."""
    return (
        text.count("/") == 1
        and not text.startswith((".", "/", "~"))
        and not Path(text).expanduser().exists()
    )


def _revision_of(directory: Path) -> str | None:
    return directory.name if directory.parent.name == "snapshots" else None


def from_directory(directory: Path, pick: Picker) -> Snapshot:
    """Pick files from a local directory (a cache snapshot keeps its revision)."""
    files = pick(list_directory(directory))
    return Snapshot(directory, tuple(files), None, _revision_of(directory), True)


def fetch_snapshot(repo_id: str, pick: Picker, *, local_files_only: bool) -> Snapshot:
    """The picked files of ``repo_id``: from the local cache if there, else (if allowed) the Hub.

    Args:
        repo_id: ``owner/name``.
        pick: chooses the needed files from a listing.
        local_files_only: never use the network.

    Raises:
        SnapshotUnavailable: not cached (or the cached snapshot lacks what ``pick`` needs) and
            the network is not allowed or fails; the message gives both reasons.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        # Only config.json is asked for: the snapshot's own listing decides the rest, and a
        # partial preload (some files of a big repo) is not refused as incomplete.
        cached = Path(
            snapshot_download(repo_id, local_files_only=True, allow_patterns=["config.json"])
        )
        snapshot = from_directory(cached, pick)
        return Snapshot(cached, snapshot.files, repo_id, snapshot.revision, True)
    except LocalEntryNotFoundError as err:
        cache_reason = f"not in the local Hugging Face cache ({err.__class__.__name__})"
    except SnapshotUnavailable as err:
        cache_reason = f"the cached snapshot is incomplete: {err}"
    if local_files_only or not hub_reachable():
        raise SnapshotUnavailable(
            f"{repo_id}: {cache_reason}; offline (the Hugging Face Hub is not reachable from here)."
        )
    return _download(repo_id, pick, cache_reason)


def _download(repo_id: str, pick: Picker, cache_reason: str) -> Snapshot:
    from huggingface_hub import HfApi, snapshot_download

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

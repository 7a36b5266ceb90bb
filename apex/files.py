"""Files written whole or not at all, and file hashes: the one home for both habits.

Every writer in the project that must never leave half a file behind (vote exports, embedding
shards, checkpoints, registry pointers, cached audio) goes through :func:`atomic_path` or one of
the ``write_*_atomic`` shorthands. The temporary file sits in the target's folder (so
``os.replace`` stays on one file system and is atomic), has a name unique to the writer (two
writers never share one), starts with ``.tmp-`` and ends in ``.partial``, so no ``*.parquet`` or
``*.wav`` glob ever counts it (pathlib globs match hidden names, so the ending is what matters).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Ending of every temporary file :func:`atomic_path` hands out.
PARTIAL_SUFFIX = ".partial"
_BLOCK = 1 << 20  # bytes read per step when hashing a file


def partial_name(target: Path) -> Path:
    """A fresh temporary path beside ``target``: ``.tmp-<name>.<8 hex>.partial``."""
    return target.with_name(f".tmp-{target.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def is_partial(path: Path) -> bool:
    """True for a temporary file of :func:`atomic_path` (left behind only by a killed writer)."""
    return path.name.startswith(".tmp-") and path.name.endswith(PARTIAL_SUFFIX)


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike[str], *, fsync: bool = True, exclusive: bool = False
) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` in one step.

    The caller writes the whole file to the yielded path (by any means: pandas, torch, soundfile
    with an explicit ``format``). On a clean exit the file is fsynced (unless ``fsync=False``, for
    caches that can be rebuilt) and renamed over ``target``; on an exception it is removed and
    ``target`` is left as it was. Readers see the old file or the new one, never half of one.
    The parent folder is created when missing.

    With ``exclusive=True`` the file is created, never replaced: it is hard-linked to ``target``,
    which raises ``FileExistsError`` (and leaves the existing file alone) when ``target`` exists,
    so of two writers racing for one name the first wins (write-once files: published shards, a
    generated secret).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(target)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, exist_ok: bool = False) -> Iterator[Path]:
    """Yield a fresh empty folder beside ``target``; on success it becomes ``target`` in one rename.

    For outputs that are a folder of files (a saved model, an export of several files): readers
    see no ``target`` or a complete one. ``target`` must not exist when the block ends (remove a
    stale one first), else the rename raises; with ``exist_ok=True`` a ``target`` another writer
    completed first is kept and this one is dropped (for content-addressed folders, whose
    contents are the same). On an exception the temporary folder is removed and ``target`` is
    left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(target)
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError as err:
            if not (exist_ok and err.errno in (errno.EEXIST, errno.ENOTEMPTY)):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`); return the target."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str, *, fsync: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically (see :func:`atomic_path`); return it."""
    return write_bytes_atomic(target, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(
    target: str | os.PathLike[str], value: Any, *, indent: int | None = 2, fsync: bool = True
) -> Path:
    """Write ``value`` as JSON (sorted keys, trailing newline) atomically; return the target.

    ``value`` must be plain JSON (dicts, lists, str, int, float, bool, None): anything else raises
    ``TypeError`` before ``target`` is touched.
    """
    text = json.dumps(value, indent=indent, sort_keys=True) + "\n"
    return write_text_atomic(target, text, fsync=fsync)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

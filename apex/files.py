"""Files written whole or not at all (:func:`atomic_path`), and file hashes. Temporary files sit
beside their target (``os.replace`` stays atomic) as ``.tmp-<name>.<hex>.partial``, which no
``*.parquet`` or ``*.wav`` glob counts."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: Ending of every temporary file :func:`atomic_path` hands out.
PARTIAL_SUFFIX = ".partial"


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
    """Yield a temporary path to write whole; on a clean exit it is fsynced (unless ``fsync``
    is False: rebuildable caches) and renamed over ``target``, on an exception removed.
    ``exclusive=True`` hard-links instead: ``FileExistsError`` when ``target`` exists (the first
    of two racing writers wins)."""
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
    """Yield a fresh empty folder beside ``target``; on success it becomes ``target`` in one rename
    (which raises if ``target`` exists, unless ``exist_ok``: then the existing one is kept). On an
    exception the folder is removed."""
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
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename


def write_text_atomic(target: str | os.PathLike[str], text: str, *, fsync: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically (see :func:`atomic_path`); return it."""
    with atomic_path(target, fsync=fsync) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    return Path(target)


def write_json_atomic(
    target: str | os.PathLike[str],
    value: Any,
    *,
    indent: int | None = 2,
    fsync: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write JSON ``value`` (sorted keys, trailing newline) atomically; return the target. What
    is not plain JSON goes through ``default`` (None: ``TypeError``, ``target`` untouched)."""
    text = json.dumps(value, indent=indent, sort_keys=True, default=default) + "\n"
    return write_text_atomic(target, text, fsync=fsync)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (memory stays flat for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

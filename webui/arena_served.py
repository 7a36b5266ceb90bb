"""Where the Arena's clips are served from: a fresh, random link to each clip for each battle.

Gradio serves :func:`served_folder` as static files (``gr.set_static_paths``); nothing else of the
deployment is exposed. Links are grouped in folders by issue time, so expired ones are removed a
folder at a time.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from apex.files import atomic_path, sha256_text
from webui.uploads import remove_tree

#: Served links are grouped in folders by issue time (this many seconds each), so old ones are
#: removed a folder at a time without a stat per file (a hard link's mtime is its source's).
SERVED_BUCKET_S = 600


def served_folder(settings: Any) -> Path:
    """Where the per-battle links to arena clips live (gradio serves it as static files).

    Under the system's temp folder, not the data directory, so a clip's URL shows nothing of the
    deployment's layout; one subfolder per deployment (a hash of its data directory) so that two
    apps on one machine never remove each other's links.
    """
    deployment = sha256_text(str(Path(settings.data_dir).resolve()))
    return Path(tempfile.gettempdir()) / "apex-arena-audio" / deployment[:16]


def served_copy(path: str | Path, folder: Path, *, keep_s: float = 3600.0) -> str:
    """A fresh link to the clip, under a random name, for one battle; returns its path.

    Each call makes a new name (``secrets.token_urlsafe``, 128 bits): names are neither derived
    from the pool's paths (which may be public, so a hash of them could be computed by anyone)
    nor stable across battles (a reveal would otherwise teach which system a link belongs to for
    every later battle). The link is a hard link (a copy across file systems), cheaper than
    re-encoding audio. Links older than ``keep_s`` seconds (plus one bucket) are removed here,
    a bucket folder at a time.

    Args:
        path: the clip to serve (the pool's file, or a prepared copy of it).
        folder: :func:`served_folder`.
        keep_s: how long a link must stay playable, seconds (the battle's lifetime).
    """
    path = Path(path)
    bucket = int(time.time() // SERVED_BUCKET_S)
    target_dir = folder / str(bucket)
    target = target_dir / f"{secrets.token_urlsafe(16)}{path.suffix.lower()}"
    # Atomic (the player never sees half a file); no fsync: a lost link is re-issued, not data.
    with atomic_path(target, fsync=False) as partial:
        try:
            os.link(path, partial)
        except OSError:  # another file system (or no hard links there): copy instead
            shutil.copyfile(path, partial)
    _remove_old_links(folder, bucket - math.ceil(keep_s / SERVED_BUCKET_S) - 1)
    return str(target)


def _remove_old_links(folder: Path, oldest_kept: int) -> None:
    """Delete the bucket folders older than ``oldest_kept`` (their battles have expired)."""
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) < oldest_kept:
            remove_tree(entry)  # another request may be removing it at the same time

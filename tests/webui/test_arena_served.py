"""Per-battle clip links (:mod:`webui.arena_served`): unguessable names, expiry."""

from __future__ import annotations

import shutil
from pathlib import Path

from webui import arena_served


def test_served_names_cannot_be_computed_from_the_pool(tmp_path: Path, settings) -> None:
    import hashlib

    clip = tmp_path / "pool" / "suno_v4_0001.flac"
    clip.parent.mkdir()
    clip.write_bytes(b"fLaC-bytes")
    folder = arena_served.served_folder(settings)
    first = Path(arena_served.served_copy(clip, folder))
    again = Path(arena_served.served_copy(clip, folder))  # the same clip in a later battle
    assert first != again and first.name != again.name
    assert first.read_bytes() == again.read_bytes() == b"fLaC-bytes" and first.suffix == ".flac"
    # Nothing anyone could compute from the pool: no file name, no hash of the path or content.
    guesses = {str(clip), str(clip.resolve()), clip.name, "fLaC-bytes"}
    hashes = {hashlib.sha256(g.encode()).hexdigest() for g in guesses}
    for served in (first, again):
        assert "suno" not in str(served)
        assert not any(h[:8] in str(served) for h in hashes)
        # The link lives outside the data directory, so its URL shows nothing of the layout.
        assert not served.is_relative_to(settings.data_dir) and served.is_relative_to(folder)
    shutil.rmtree(folder)


def test_served_links_are_removed_once_their_battles_expired(tmp_path: Path, settings) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    folder = tmp_path / "served"
    stale = folder / "12"  # a bucket from long ago
    stale.mkdir(parents=True)
    (stale / "old.wav").write_bytes(b"x")
    fresh = Path(arena_served.served_copy(clip, folder, keep_s=3600))
    assert not stale.exists() and fresh.exists()
    assert clip.exists()  # the pool's file is never touched

"""The arena pool from Music Arena's release layout: local copies, bad records, the Hub offline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from annotation.pool import ClipPool, PoolError, load_pool


@pytest.fixture(scope="module")
def release(small_demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo clips in Music Arena's layout, plus a torn record and one clip missing on disk."""
    from apex.demo import load_metadata, simulate_votes
    from apex.sources.music_arena import export_votes

    meta = load_metadata(small_demo_corpus)
    out = export_votes(
        small_demo_corpus,
        simulate_votes(meta, 12, seed=4),
        tmp_path_factory.mktemp("ma"),
        audio_format="copy",
    )
    batch = next((out / "battle_data").iterdir())
    (batch / "torn.json").write_text('{"battle_uuid": "x", "system_a": ')
    victim = sorted((out / "audio_files").glob("*/*"))[0]
    victim.unlink()
    return out


def test_clips_carry_system_prompt_flag_and_duration(release: Path) -> None:
    from apex.sources.music_arena import read_release

    pool = ClipPool.from_music_arena(release)
    clips = read_release(release).clips().set_index("clip_id")
    assert len(pool) == int(clips["has_audio"].sum()) >= 2
    for clip in pool:
        row = clips.loc[clip.clip_id]
        assert (clip.system, clip.prompt) == (row["system"], row["prompt"])
        assert clip.is_instrumental == bool(row["is_instrumental"])
        assert clip.duration_s == pytest.approx(row["duration_s"], abs=0.05)
        assert clip.path.is_file() and clip.file_name.startswith("audio_files/")
    reasons = dict(pool.skipped)
    assert any(name.endswith("torn.json") for name in reasons)
    assert "audio file not on disk" in reasons.values()


def test_load_pool_recognises_a_local_copy(release: Path, settings) -> None:
    pool = load_pool(dataclasses.replace(settings, pool=str(release)))
    assert len(pool) >= 2 and pool.root == release.resolve()
    assert len({clip.system for clip in pool}) >= 2


def test_the_hub_release_fails_offline_with_a_way_out(settings) -> None:
    for spec in ("music-arena", "music-arena:02-2025SEP,03-2025OCT"):
        with pytest.raises(PoolError, match="APEX_POOL=demo") as err:
            load_pool(dataclasses.replace(settings, pool=spec))
        assert "could not download" in str(err.value)


def test_a_release_without_usable_audio_is_refused(tmp_path: Path) -> None:
    batch = tmp_path / "battle_data" / "02-2025SEP"
    batch.mkdir(parents=True)
    record = {
        "battle_uuid": "u1",
        "timestamp": 1757685600.0,
        "system_a": "x",
        "system_b": "y",
        "audio_a": "audio_files/02-2025SEP/a.mp3",
        "audio_b": "",
        "preference": "A",
    }
    (batch / "u1.json").write_text(json.dumps(record))
    with pytest.raises(PoolError, match="no usable clip"):
        ClipPool.from_music_arena(tmp_path)
    with pytest.raises(PoolError, match="battle_data"):
        ClipPool.from_music_arena(tmp_path / "battle_data")

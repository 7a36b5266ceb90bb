"""Music Arena reader: fixtures in the public layout, malformed records, the demo export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apex.sources.music_arena import (
    BATTLE_COLUMNS,
    MusicArenaError,
    batch_name,
    export_votes,
    read_release,
    resolve,
)

BATCH = "02-2025SEP"


def _mp3(path: Path, seconds: float = 1.5, freq: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 24_000)) / 24_000
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32), 24_000, format="MP3")


def _battle(uuid: str, a: str, b: str, pref: str | None, **extra) -> dict:
    """A record with the fields Music Arena's preprocess writes (values made up)."""
    record = {
        "battle_uuid": uuid,
        "date": "2025-09-12T10:00:00-04:00",
        "prompt": f"prompt of {uuid}",
        "is_instrumental": True,
        "is_prebaked": False,
        "user_pseudonym": f"salted-{uuid[:4]}",
        "audio_a": f"audio_files/{BATCH}/{a}.mp3" if a else "",
        "system_a": "sys-x",
        "audio_b": f"audio_files/{BATCH}/{b}.mp3" if b else "",
        "system_b": "sys-y",
        "preference": pref,
        "total_listening_time_a": 12.5,
        "total_listening_time_b": 9.0,
        "feedback": "",
        "timestamp": 1757685600.0,
        "lyrics": "",
        "hardware_a": "A6000",
        "hardware_b": "Unknown (API)",
        "duration_a": 1.5,
        "duration_b": 1.5,
        "sample_rate_a": 24000,
        "sample_rate_b": 24000,
        "listen_data_a": json.dumps([["PLAY", 1.0], ["PAUSE", 13.5]]),
        "listen_data_b": None,
    }
    record.update(extra)
    return record


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 good battles, 3 bad records, one unreleased clip and one released clip absent on disk."""
    root = tmp_path_factory.mktemp("music-arena")
    battles = root / "battle_data" / BATCH
    battles.mkdir(parents=True)
    for i, clip in enumerate(["c1", "c2", "c3"]):
        _mp3(root / "audio_files" / BATCH / f"{clip}.mp3", freq=300 + 100 * i)
    good = [
        _battle("b-0001", "c1", "c2", "A"),
        _battle("b-0002", "c2", "c3", "TIE", is_instrumental="false", timestamp=1757685700.0),
        _battle("b-0003", "c1", "", "B", is_instrumental=None, timestamp=1757685800.0),
        _battle(
            "b-0004", "c3", "gone", "BOTH_BAD", timestamp=None, system_a="sys-y"
        ),  # falls back on date
    ]
    for record in good:
        (battles / f"{record['battle_uuid']}.json").write_text(json.dumps(record))
    (battles / "bad-json.json").write_text('{"battle_uuid": "b-x", "preference": ')
    (battles / "bad-pref.json").write_text(json.dumps(_battle("b-0005", "c1", "c2", "MAYBE")))
    (battles / "no-id.json").write_text(json.dumps(_battle("", "c1", "c2", "A")))
    (root / "metadata").mkdir()
    (root / "metadata" / f"{BATCH}.md").write_text("# summary")
    return root


def test_reads_every_good_battle_and_reports_each_bad_record(release_dir: Path) -> None:
    release = read_release(release_dir)
    assert list(release.battles.columns) == list(BATTLE_COLUMNS)
    assert sorted(release.battles["battle_uuid"]) == ["b-0001", "b-0002", "b-0003", "b-0004"]
    reasons = dict(release.skipped)
    assert set(reasons) == {
        f"battle_data/{BATCH}/bad-json.json",
        f"battle_data/{BATCH}/bad-pref.json",
        f"battle_data/{BATCH}/no-id.json",
    }
    assert "MAYBE" in reasons[f"battle_data/{BATCH}/bad-pref.json"]
    assert "battle_uuid" in reasons[f"battle_data/{BATCH}/no-id.json"]


def test_normalises_flags_clips_and_timestamps(release_dir: Path) -> None:
    rows = read_release(release_dir).battles.set_index("battle_uuid")
    assert rows.loc["b-0001", "is_instrumental"]
    assert not rows.loc["b-0002", "is_instrumental"]  # the string "false"
    assert not rows.loc["b-0003", "is_instrumental"]  # null, as Music Arena's leaderboard reads it
    assert rows.loc["b-0003", "clip_b"] == "" and not rows.loc["b-0003", "has_audio_b"]
    assert rows.loc["b-0004", "clip_b"] == "gone" and not rows.loc["b-0004", "has_audio_b"]
    assert rows.loc["b-0001", "has_audio_a"] and rows.loc["b-0001", "batch"] == BATCH
    expected = datetime.fromisoformat("2025-09-12T10:00:00-04:00").timestamp()
    assert rows.loc["b-0004", "timestamp"] == pytest.approx(expected)
    assert read_release(release_dir).battles["timestamp"].is_monotonic_increasing


def test_clips_are_the_released_files_once_each(release_dir: Path) -> None:
    clips = read_release(release_dir).clips().set_index("clip_id")
    assert sorted(clips.index) == ["c1", "c2", "c3", "gone"]  # unreleased "" has no row
    assert clips.loc["c1", "system"] == "sys-x" and clips.loc["c3", "system"] == "sys-y"
    assert not clips.loc["gone", "has_audio"] and clips.loc["c2", "has_audio"]
    assert clips.loc["c1", "file_name"] == f"audio_files/{BATCH}/c1.mp3"


def test_a_folder_without_the_layout_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(MusicArenaError, match="battle_data"):
        read_release(tmp_path)
    (tmp_path / "battle_data").mkdir()
    with pytest.raises(MusicArenaError, match="no battle_data"):
        read_release(tmp_path)


@pytest.mark.parametrize(
    ("when", "batch"),
    [
        (datetime(2025, 7, 28, 12, tzinfo=UTC), "01-2025JULAUG"),
        (datetime(2025, 9, 1, 3, tzinfo=UTC), "01-2025JULAUG"),  # still Aug 31 in New York
        (datetime(2025, 9, 15, tzinfo=UTC), "02-2025SEP"),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "05-2025DEC"),
        (datetime(2026, 1, 2, tzinfo=UTC), "06-2026JAN"),
    ],
)
def test_batch_names_follow_music_arena(when: datetime, batch: str) -> None:
    assert batch_name(when) == batch


def test_the_hub_path_fails_offline_with_advice(tmp_path: Path) -> None:
    with pytest.raises(MusicArenaError, match=r"could not download .*huggingface-cli download"):
        resolve("music-arena", cache_dir=tmp_path, batches=("02-2025SEP",))
    with pytest.raises(MusicArenaError, match="neither a folder nor a Hub dataset id"):
        resolve("no such thing", cache_dir=tmp_path)
    assert resolve(tmp_path, cache_dir=tmp_path) == tmp_path


def test_demo_export_round_trips_votes_and_audio(small_demo_corpus: Path, tmp_path: Path) -> None:
    from apex.audio import load_audio
    from apex.demo import load_metadata, simulate_votes

    meta = load_metadata(small_demo_corpus)
    votes = simulate_votes(meta, 30, seed=3)
    out = export_votes(small_demo_corpus, votes, tmp_path / "copy", audio_format="copy")
    release = read_release(out)
    assert release.skipped == []
    got = release.battles.set_index("battle_uuid").loc[votes["battle_uuid"]]
    assert (got["preference"].to_numpy() == votes["preference"].to_numpy()).all()
    assert (got["clip_a"].to_numpy() == votes["clip_a"].to_numpy()).all()
    assert got["has_audio_a"].all() and got["has_audio_b"].all()
    record = json.loads(next((out / "battle_data").glob("*/*.json")).read_text())
    assert record["apex_demo"] is True and "DEMO" in (out / "README.md").read_text()

    mp3 = export_votes(small_demo_corpus, votes.head(2), tmp_path / "mp3")
    clip = read_release(mp3).clips().iloc[0]
    assert clip["file_name"].endswith(".mp3")
    decoded = load_audio(mp3 / clip["file_name"])
    assert decoded.duration_s == pytest.approx(clip["duration_s"], abs=0.2)

"""Engagement listings: Suno's and Udio's song objects, bad rows, unknown layouts, targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.sources.engagement import (
    ListingError,
    assign_split,
    detect,
    download_items,
    normalise,
    read_listing,
    with_targets,
)


def _suno_song(i: int, plays, upvotes, **extra) -> dict:
    """A row shaped like Suno's public song objects (nested ``metadata``; values made up)."""
    song = {
        "id": f"0000{i:04d}-aaaa-bbbb-cccc-dddddddddddd",
        "video_url": f"https://cdn1.suno.ai/{i}.mp4",
        "audio_url": f"https://cdn1.suno.ai/{i}.mp3",
        "image_url": f"https://cdn2.suno.ai/image_{i}.jpeg",
        "major_model_version": "v3",
        "model_name": "chirp-v3",
        "metadata": {"tags": "emotional punk", "prompt": "", "duration": 60.0 + i, "type": "gen"},
        "is_public": True,
        "created_at": "2024-09-21T09:43:21.637Z",
        "title": f"Song {i}",
        "play_count": plays,
        "upvote_count": upvotes,
        "display_name": "Someone",
        "handle": "someone",
    }
    song.update(extra)
    return song


@pytest.fixture
def suno_file(tmp_path: Path) -> Path:
    songs = [_suno_song(i, 10 * i, i) for i in range(40)]
    songs.append(_suno_song(40, "lots", 3))  # malformed count
    songs.append(_suno_song(41, 5, 1, audio_url=None))  # no audio
    songs.append(_suno_song(3, 1, 1))  # duplicate id
    path = tmp_path / "suno.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in songs))
    return path


def test_suno_dump_maps_onto_the_fields_and_reports_bad_rows(suno_file: Path) -> None:
    frame = read_listing(suno_file)
    assert detect(frame) == "suno"
    listing, skipped = normalise(frame)
    assert len(listing) == 40 and set(listing["platform"]) == {"suno"}
    assert dict(skipped) == {
        40: "streams is not a count >= 0",
        41: "no http(s) audio URL",
        42: "duplicate id",
    }
    row = listing.iloc[5]
    assert (row["streams"], row["likes"], row["duration_s"]) == (50.0, 5.0, 65.0)
    assert (row["model_version"], row["tags"]) == ("v3", "emotional punk")


def _udio_song(song_id: str, plays, likes) -> dict:
    """A song object of Udio's ``/api/songs`` (keys as yt-dlp's extractor reads; counts made up)."""
    return {
        "id": song_id,
        "title": "Lost Love",
        "artist": "The I Don't Knows",
        "user_id": "ad838917-7454-4b7e-be22-e3d0ab415b4e",
        "song_path": f"https://storage.googleapis.com/udio-artifacts/{song_id}.mp3",
        "video_path": None,
        "image_path": "https://imagedelivery.net/x/y/public",
        "prompt": "upbeat synthwave",
        "lyrics": "",
        "duration": 269.461333333333,
        "created_at": "2024-04-30T19:58:32Z",
        "published_at": "2024-04-30T19:58:32Z",
        "plays": plays,
        "likes": likes,
        "tags": ["upbeat synthwave", "serene", "synth"],
    }


def test_udio_song_objects_use_their_own_map(tmp_path: Path) -> None:
    songs = [_udio_song("ehJuLz9DuCtVapQMVMcA7N", 7, 1), _udio_song("u2", 9, 2)]
    path = tmp_path / "udio.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in songs))
    listing, skipped = normalise(read_listing(path))
    assert skipped == [] and list(listing["platform"]) == ["udio", "udio"]
    assert listing["streams"].tolist() == [7.0, 9.0]
    assert listing["duration_s"].tolist() == [269.461333333333] * 2
    assert listing["model_version"].isna().all()
    csv = tmp_path / "udio.csv"
    pd.DataFrame(songs).drop(columns="tags").to_csv(csv, index=False)
    assert normalise(read_listing(csv))[0]["likes"].tolist() == [1.0, 2.0]


def test_an_unknown_layout_lists_the_columns_it_found() -> None:
    frame = pd.DataFrame({"track": ["a"], "mp3": ["https://x"], "listens": [3]})
    with pytest.raises(ListingError, match=r"found columns \['listens', 'mp3', 'track'\]") as err:
        normalise(frame)
    assert "play_count" in str(err.value) and "plays" in str(err.value)
    with pytest.raises(ListingError, match="unknown platform"):
        detect(frame, "spotify")


def test_unreadable_listings_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "suno.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(ListingError, match="zstd -d"):
        read_listing(tmp_path / "suno.jsonl.zst")
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{"id": \n')
    with pytest.raises(ListingError, match="cannot read"):
        read_listing(tmp_path / "bad.jsonl")


def test_targets_are_percentile_then_power_on_the_training_split(suno_file: Path) -> None:
    listing, _ = normalise(read_listing(suno_file))
    scored = with_targets(listing, power=0.5)
    assert set(scored["split"]) <= {"train", "val", "test"}
    assert scored["score_streams"].between(0, 100).all()
    order = np.argsort(scored["streams"].to_numpy())
    assert np.all(np.diff(scored["score_streams"].to_numpy()[order]) >= 0)  # monotone in plays
    assert (assign_split(scored["id"]) == scored["split"]).all()  # stable: a hash of the id
    train = scored[scored["split"] == "train"]
    pct = (train["score_streams"] / 100) ** 2  # undo the power: mid-rank percentiles
    assert pct.mean() == pytest.approx(0.5, abs=0.02)


def test_download_items_carry_targets_for_apex_embed(suno_file: Path, tmp_path: Path) -> None:
    from apex.embed.manifest import read_manifest
    from apex.sources.download import DownloadResult, write_manifest

    scored = with_targets(normalise(read_listing(suno_file))[0])
    items = download_items(scored)
    assert items[0].file_name == f"audio/{scored['id'][0]}.mp3"
    assert items[0].meta["platform"] == "suno" and "score_likes" in items[0].meta
    for item in items[:3]:  # pretend these arrived
        (tmp_path / item.file_name).parent.mkdir(exist_ok=True)
        (tmp_path / item.file_name).write_bytes(b"x")
    done = [DownloadResult(i, "downloaded", tmp_path / i.file_name, "h") for i in items[:3]]
    manifest = write_manifest(done, tmp_path / "manifest.jsonl")
    rows = read_manifest(manifest)
    assert [r["id"] for r in rows] == list(scored["id"][:3])
    assert rows[1]["streams"] == 10.0 and rows[1]["platform"] == "suno"

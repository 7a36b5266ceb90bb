"""SongEval: its audiofolder layout, nested or flat ratings, bad records, metrics per dimension."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.sources.songeval import (
    LICENSE,
    SongEvalError,
    aesthetic_metrics,
    read_songeval,
    write_manifest,
)
from apex.tasks import AESTHETICS

NAMES = {
    "coherence": "Coherence",
    "musicality": "Musicality",
    "memorability": "Memorability",
    "clarity": "Clarity",
    "naturalness": "Naturalness",
}


@pytest.fixture
def songeval_dir(tmp_path: Path) -> Path:
    """Six songs: nested ratings (one as per-rater lists), a bad rating, a missing mp3, bad JSON."""
    (tmp_path / "mp3").mkdir()
    lines = []
    for i in range(6):
        scores = {NAMES[a]: round(1.5 + 0.5 * i + 0.1 * k, 2) for k, a in enumerate(AESTHETICS)}
        if i == 1:
            scores = {name: [3, 4, 5] for name in NAMES.values()}
        if i == 4:
            scores["Clarity"] = "n/a"
        lines.append(
            json.dumps(
                {"file_name": f"mp3/{i:04d}.mp3", "gender": "female", "aesthetic_scores": scores}
            )
        )
        if i != 5:
            (tmp_path / "mp3" / f"{i:04d}.mp3").write_bytes(b"ID3")
    lines.insert(3, '{"file_name": "mp3/torn.mp3", ')
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_reads_nested_ratings_and_reports_every_bad_record(songeval_dir: Path) -> None:
    data = read_songeval(songeval_dir)
    songs = data.songs.set_index("clip_id")
    assert sorted(songs.index) == ["0000", "0001", "0002", "0003", "0005"]
    assert songs.loc["0001", list(AESTHETICS)].tolist() == [4.0] * 5  # mean of 3, 4, 5
    assert songs.loc["0002", "clarity"] == pytest.approx(2.8)
    reasons = dict(data.skipped)
    assert "invalid JSON" in reasons["metadata.jsonl:4"]
    assert "not a number" in reasons["mp3/0004.mp3"]
    assert reasons["mp3/0005.mp3"] == "audio file not on disk"
    assert not songs.loc["0005", "has_audio"] and songs.loc["0000", "has_audio"]


def test_flat_csv_columns_with_long_names_are_matched(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "file_name": ["mp3/a.mp3"],
            "Overall Coherence": [3.0],
            "Memorability": [2.0],
            "Naturalness of Vocal Breathing and Phrasing": [4.0],
            "Clarity of Song Structure": [5.0],
            "Overall Musicality": [1.0],
        }
    ).to_csv(tmp_path / "metadata.csv", index=False)
    row = read_songeval(tmp_path).songs.iloc[0]
    assert [row[a] for a in AESTHETICS] == [3.0, 1.0, 2.0, 5.0, 4.0]


def test_unknown_layout_and_out_of_range_ratings(tmp_path: Path) -> None:
    with pytest.raises(SongEvalError, match=r"no metadata\.jsonl"):
        read_songeval(tmp_path)
    pd.DataFrame({"file_name": ["a.mp3"], "quality": [3]}).to_csv(tmp_path / "metadata.csv")
    with pytest.raises(SongEvalError, match=r"found columns .*quality"):
        read_songeval(tmp_path)
    pd.DataFrame({"file_name": ["a.mp3"], **{n: [7] for n in NAMES.values()}}).to_csv(
        tmp_path / "metadata.csv", index=False
    )
    data = read_songeval(tmp_path)
    assert data.songs.empty and "outside 1-5" in data.skipped[0][1]


def test_manifest_feeds_apex_embed_with_targets_and_licence(songeval_dir: Path) -> None:
    from apex.embed.manifest import read_manifest

    path = write_manifest(read_songeval(songeval_dir), songeval_dir / "manifest.jsonl")
    rows = read_manifest(path)
    assert [r["id"] for r in rows] == [
        "songeval:0000",
        "songeval:0001",
        "songeval:0002",
        "songeval:0003",
    ]
    assert rows[1]["coherence"] == 4.0 and rows[0]["platform"] == "songeval"
    assert json.loads(rows[0]["extra"])["license"] == LICENSE


def test_metrics_per_dimension() -> None:
    rng = np.random.default_rng(0)
    truth = pd.DataFrame(rng.uniform(1, 5, (50, 5)), columns=list(AESTHETICS))
    perfect = aesthetic_metrics(truth * 0.5 + 1, truth)  # a monotone, linear copy
    assert all(
        m["lcc"] == pytest.approx(1) and m["ktau"] == pytest.approx(1) for m in perfect.values()
    )
    reversed_ = aesthetic_metrics(-truth, truth)
    assert reversed_["clarity"]["srcc"] == pytest.approx(-1)
    constant = aesthetic_metrics(truth * 0 + 3, truth)
    assert np.isnan(constant["coherence"]["lcc"]) and constant["coherence"]["n"] == 50
    partial = aesthetic_metrics(truth.iloc[:10], truth)
    assert partial["memorability"]["n"] == 10

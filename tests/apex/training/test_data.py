"""Engagement shards, target transform, ratings join, battles and the time split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.tasks import SCORE_NAMES
from apex.training.battles import battles_from_votes, time_split
from apex.training.data import (
    DataError,
    TargetTransform,
    apply_ratings,
    assemble,
    load_engagement,
    read_shards,
    write_shard,
)


def _frame(n: int = 12, segments: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"song{i}" for i in range(n)],
            "embedding": list(rng.normal(size=(n, segments, 3, 4)).astype(np.float32)),
            "duration_s": 60.0,
            "encoder_id": "fallback",
            "platform": ["p1"] * (n // 2) + ["p2"] * (n - n // 2),
            "split": (["train"] * 8 + ["val"] * 2 + ["test"] * 2 + ["train"] * n)[:n],
            "streams": rng.lognormal(5, 1, n),
            "likes": rng.lognormal(2, 1, n),
            "coherence": rng.uniform(1, 5, n),
        }
    )


def test_shards_round_trip_shapes_and_values(tmp_path: Path) -> None:
    frame = _frame()
    write_shard(frame.iloc[:5], tmp_path / "a" / "0.parquet")
    write_shard(frame.iloc[5:], tmp_path / "b.parquet")
    back = read_shards(tmp_path)
    assert list(back["id"]) == list(frame["id"])  # shards read in path order: a/0, then b
    np.testing.assert_array_equal(
        back.set_index("id").loc["song3", "embedding"], frame["embedding"][3]
    )
    assert back["musicality"].isna().all()


def test_song_and_segment_modes(tmp_path: Path) -> None:
    write_shard(_frame(), tmp_path / "x.parquet")
    song, _ = load_engagement(tmp_path, mode="song")
    seg, _ = load_engagement(tmp_path, mode="segment")
    assert song.x.shape == (12, 3, 4) and seg.x.shape == (24, 3, 4)
    np.testing.assert_array_equal(seg.row_song, np.repeat(np.arange(12), 2))
    np.testing.assert_allclose(song.song_x, seg.song_x)
    assert song.fingerprint == seg.fingerprint
    assert song.targets.shape == (12, len(SCORE_NAMES))


def test_target_transform_is_fitted_on_train_only_and_monotone(tmp_path: Path) -> None:
    frame = _frame(n=40)
    write_shard(frame, tmp_path / "x.parquet")
    data, transform = load_engagement(tmp_path)
    train_streams = frame.loc[(frame.split == "train") & (frame.platform == "p1"), "streams"]
    assert transform.quantiles["p1"]["streams"] == sorted(train_streams)
    scores = data.targets[:, 0]
    assert np.all((scores >= 0) & (scores <= 100))
    for platform in ("p1", "p2"):
        rows = frame.platform == platform
        order = np.argsort(frame.loc[rows, "streams"].to_numpy())
        assert np.all(np.diff(scores[rows.to_numpy()][order]) >= 0)


def test_target_transform_power_and_round_trip() -> None:
    t = TargetTransform(power=0.5)
    ref = np.arange(1.0, 101.0)
    assert t.score(np.array([1e9]), ref)[0] == pytest.approx(100.0)
    assert t.score(np.array([0.0]), ref)[0] == 0.0
    # the median maps to sqrt(0.5) * 100 with power 0.5
    assert t.score(np.array([50.5]), ref)[0] == pytest.approx(100 * 0.5**0.5)
    again = TargetTransform.from_dict(TargetTransform(0.7, {"p": {"streams": [1.0]}}).to_dict())
    assert again.power == 0.7 and again.quantiles == {"p": {"streams": [1.0]}}


def test_human_ratings_join_aesthetic_targets() -> None:
    frame = _frame()
    ratings = pd.DataFrame({"clip_id": ["song1", "song1", "song2"], "musicality": [4.0, 5.0, 2.0]})
    out = apply_ratings(frame, ratings)
    assert out.set_index("id").loc["song1", "musicality"] == 4.5
    assert np.isnan(out.set_index("id").loc["song3", "musicality"])
    with pytest.raises(DataError, match="clip_id"):
        apply_ratings(frame, pd.DataFrame({"x": [1]}))


def test_battles_drop_both_bad_and_unknown_clips_and_map_ties() -> None:
    index = {"a": 0, "b": 1, "c": 2}
    votes = pd.DataFrame(
        {
            "clip_a": ["a", "a", "b", "zz", "c"],
            "clip_b": ["b", "c", "c", "a", "c"],
            "preference": ["A", "TIE", "BOTH_BAD", "B", "A"],
            "timestamp": pd.to_datetime([f"2026-01-0{d}" for d in range(1, 6)], utc=True),
        }
    )
    battles = battles_from_votes(votes, index)
    assert list(battles.a) == [0, 0] and list(battles.b) == [1, 2]
    assert list(battles.y) == [1.0, 0.5]
    with pytest.raises(DataError, match="unknown preference"):
        battles_from_votes(votes.assign(preference="maybe"), index)


def test_time_split_holds_out_the_latest_votes_not_a_random_sample() -> None:
    rng = np.random.default_rng(1)
    n = 100
    stamps = rng.permutation(np.arange(n, dtype=float))  # shuffled order on purpose
    votes = pd.DataFrame(
        {
            "clip_a": ["a"] * n,
            "clip_b": ["b"] * n,
            "preference": ["A"] * n,
            "timestamp": stamps,
        }
    )
    battles = battles_from_votes(votes, {"a": 0, "b": 1})
    early, late = time_split(battles, 0.2)
    assert len(early) == 80 and len(late) == 20
    assert early.timestamp.max() < late.timestamp.min()
    assert sorted(late.timestamp) == list(np.arange(80.0, 100.0))
    with pytest.raises(DataError):
        time_split(battles, 1.5)


def test_mixed_encoders_are_refused(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[0, "encoder_id"] = "other"
    write_shard(frame, tmp_path / "x.parquet")
    with pytest.raises(DataError, match="one encoder"):
        load_engagement(tmp_path)


def test_pool_rows_join_without_targets_and_never_override(tmp_path: Path) -> None:
    write_shard(_frame(), tmp_path / "eng" / "0.parquet")
    pool = _frame(n=4, seed=1).assign(
        id=["song0", "arena-a", "arena-b", "arena-c"],
        encoder_id=["fallback", "fallback", "fallback", "m-a-p/MERT-v1-95M"],
        split="pool",
    )
    write_shard(pool.drop(columns=["streams", "likes", "coherence"]), tmp_path / "pool.parquet")
    plain, _ = load_engagement(tmp_path / "eng")
    data, _ = assemble(read_shards(tmp_path / "eng"), read_shards(tmp_path / "pool.parquet"))
    index = data.index_of()
    # song0 keeps its engagement row; the other encoder's clip is left out
    assert set(index) == set(plain.index_of()) | {"arena-a", "arena-b"}
    assert data.split[index["song0"]] == plain.split[plain.index_of()["song0"]]
    assert data.split[index["arena-a"]] == "pool"
    assert np.isnan(data.targets[index["arena-a"]]).all()
    votes = pd.DataFrame(
        {
            "clip_a": ["arena-a", "arena-c"],
            "clip_b": ["arena-b", "song1"],
            "preference": ["A", "B"],
            "timestamp": [1.0, 2.0],
        }
    )
    assert len(battles_from_votes(votes, index)) == 1  # the vote on two pool clips now counts
    assert len(battles_from_votes(votes, plain.index_of())) == 0

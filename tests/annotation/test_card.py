"""The dataset card: valid Hub metadata, generated from the schema, readable by ``datasets``."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from huggingface_hub import DatasetCard

from annotation.card import (
    CardStats,
    build_card,
    size_category,
    stats_from_frame,
    stats_from_shards,
    write_dataset_card,
)
from annotation.export import VOTE_COLUMNS, export_shards
from annotation.store import SQLiteVoteStore, VoteRecord

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def _vote(i: int, source: str = "live") -> VoteRecord:
    return VoteRecord(
        vote_id=f"v{i}",
        battle_uuid=f"b{i}",
        timestamp=T0 + 86_400.0 * i,
        user_pseudonym="u",
        session_pseudonym="s",
        prompt="lofi beat",
        is_instrumental=False,
        system_a=("alpha", "beta", "gamma")[i % 3],
        system_b=("beta", "gamma", "delta")[i % 3],
        clip_a="a",
        clip_b="b",
        audio_a="audio/a.wav",
        audio_b="audio/b.wav",
        preference="A",
        source=source,
    )


@pytest.fixture
def export_dir(tmp_path):
    with SQLiteVoteStore(tmp_path / "votes.sqlite") as store:
        for i in range(40):
            store.insert_vote(_vote(i, "simulated" if i % 4 == 0 else "live"))
        export_shards(store, tmp_path / "export")
    return tmp_path / "export"


def test_card_round_trips_with_valid_metadata(export_dir, settings):
    stats = stats_from_shards(export_dir)
    card = build_card(stats, repo_id="owner/apex-votes", settings=settings)
    parsed = DatasetCard(str(card))
    data = parsed.data
    assert data.license == "cc-by-4.0"
    assert data.pretty_name == "APEX Arena votes"
    assert data.size_categories == ["n<1K"]
    assert "music" in data.tags and data.task_categories
    assert data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "votes/**/*.parquet"}]}
    ]
    assert parsed.data.to_dict() == card.data.to_dict()
    text = parsed.text
    assert 'load_dataset("owner/apex-votes"' in text
    assert "2605.03395" in text and "2507.20900" in text
    assert "CC-BY-4.0" in text and "keep their own licences" in text
    for kind in ("music-arena/music-arena-dataset@<revision>:<batch>", "demo:<seed>"):
        assert f"- `{kind}`:" in text  # how to fetch the audio of every kind of pool
    for name in VOTE_COLUMNS:  # every released column is documented
        assert f"| `{name}` |" in text
    assert f"at least {settings.min_listen_s:g} s" in text
    assert f"at most {settings.rate_limit_votes} votes" in text
    assert "| Votes | 40 |" in text and "| Systems | 4 |" in text
    assert "2026-01-01" in text and "2026-02-09" in text  # first and last vote
    assert "10 of these votes are simulated" in text


def test_stats_count_votes_systems_dates_and_simulated(export_dir):
    stats = stats_from_shards(export_dir)
    assert stats.n_votes == 40 and stats.n_simulated == 10
    assert stats.systems == ("alpha", "beta", "delta", "gamma")
    assert stats.first_vote.isoformat().startswith("2026-01-01")
    assert stats.n_shards == 2  # January and February
    empty = stats_from_frame(pd.DataFrame())
    assert empty == CardStats() and empty.systems == ()
    dated = stats_from_frame(pd.DataFrame({"timestamp": pd.to_datetime(["2026-03-01"], utc=True)}))
    assert dated.first_vote == dated.last_vote and dated.first_vote.month == 3


def test_empty_card_is_still_valid(settings):
    card = DatasetCard(str(build_card(CardStats(), settings=settings)))
    assert card.data.license == "cc-by-4.0" and "| Votes | 0 |" in card.text
    assert 'load_dataset("<owner>/<name>"' in card.text


def test_write_card_only_touches_readme(export_dir, settings):
    shards = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in export_dir.rglob("*.parquet")}
    before = {p.name for p in export_dir.iterdir()}
    card = build_card(stats_from_shards(export_dir), settings=settings)
    assert write_dataset_card(export_dir, card) is True
    stamp = (export_dir / "README.md").stat().st_mtime_ns
    assert (
        write_dataset_card(export_dir, card) is False
    )  # unchanged: not rewritten, not re-uploaded
    assert (export_dir / "README.md").stat().st_mtime_ns == stamp
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in shards} == shards
    assert {p.name for p in export_dir.iterdir()} == before | {"README.md"}


@pytest.mark.parametrize(
    ("n", "label"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M"), (10**9, "n>100M")],
)
def test_size_category(n, label):
    assert size_category(n) == label


def test_datasets_reads_the_folder_through_the_card_configs(export_dir, settings, tmp_path):
    import datasets

    write_dataset_card(export_dir, build_card(stats_from_shards(export_dir), settings=settings))
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"
    ds = datasets.load_dataset(str(export_dir), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 40
    assert set(ds.column_names) == set(VOTE_COLUMNS)

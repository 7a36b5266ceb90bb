"""Export: released columns, append-only shards never rewritten, idempotent import, datasets."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from annotation.export import (
    SCHEMA,
    VOTE_COLUMNS,
    ExportError,
    export_shards,
    import_shards,
    read_vote_shards,
    to_csv,
)
from annotation.store import VOTE_FIELDS, SQLiteVoteStore
from apex.tasks import AESTHETICS, SCORE_NAMES
from tests.annotation.store.test_sqlite import make_vote

OCT = datetime(2026, 10, 30, tzinfo=timezone.utc).timestamp()
NOV = datetime(2026, 11, 2, tzinfo=timezone.utc).timestamp()


def fill(store: SQLiteVoteStore, numbers, t: float) -> None:
    for n in numbers:
        store.insert_vote(
            make_vote(
                n,
                t=t + n,
                preference=("A", "B", "TIE", "BOTH_BAD")[n % 4],
                apex_a=None if n % 3 == 0 else {name: 1.5 + n for name in SCORE_NAMES},
                ratings_b={"clarity": 1 + n % 5} if n % 2 else None,
                feedback=None if n % 2 else f"feedback {n} ✓",
                is_instrumental=bool(n % 2),
            )
        )


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteVoteStore(tmp_path / "a.sqlite") as s:
        yield s


def fingerprint(paths) -> dict[Path, tuple[int, str]]:
    return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths}


def test_columns_follow_music_arena_and_cover_apex() -> None:
    music_arena = [
        "battle_uuid", "timestamp", "date", "prompt", "is_instrumental", "user_pseudonym",
        "system_a", "system_b", "audio_a", "audio_b", "preference", "total_listening_time_a",
        "total_listening_time_b", "listen_data_a", "listen_data_b", "feedback",
    ]  # fmt: skip
    assert set(music_arena) <= set(VOTE_COLUMNS)
    for side in "ab":
        assert {f"apex_{side}_{n}" for n in SCORE_NAMES} <= set(VOTE_COLUMNS)
        assert {f"rating_{side}_{n}" for n in AESTHETICS} <= set(VOTE_COLUMNS)
    assert {"apex_model_version", "apex_p_a", "source", "vote_id"} <= set(VOTE_COLUMNS)
    assert all(len(doc) > 10 for doc in VOTE_COLUMNS.values())
    assert SCHEMA.names == list(VOTE_COLUMNS)


def test_round_trip_into_an_empty_store_is_identical(store, tmp_path: Path) -> None:
    fill(store, range(1, 13), OCT)
    out = tmp_path / "export"
    shards = export_shards(store, out)
    assert shards and all(p.is_relative_to(out / "votes") for p in shards)
    with SQLiteVoteStore(tmp_path / "b.sqlite") as restored:
        assert import_shards(restored, out) == 12
        assert import_shards(restored, out) == 0  # idempotent by vote id
        before = store.votes_frame()[["row_id", *VOTE_FIELDS]]
        after = restored.votes_frame()[["row_id", *VOTE_FIELDS]]
        pd.testing.assert_frame_equal(before, after)
        # Restored votes are already published: exporting them again writes nothing ...
        assert export_shards(restored, tmp_path / "export-b") == []
        # ... and a new vote continues the numbering after them.
        restored.insert_vote(make_vote(99, t=NOV))
        (new,) = export_shards(restored, tmp_path / "export-b")
        assert new.name == "000000000001-000000000013.parquet"
        assert list(read_vote_shards(tmp_path / "export-b")["vote_id"]) == ["vote-99"]


def test_export_is_append_only(store, tmp_path: Path) -> None:
    out = tmp_path / "export"
    fill(store, range(1, 6), OCT)
    first = export_shards(store, out)
    assert [p.relative_to(out).as_posix() for p in first] == [
        "votes/2026/10/000000000001-000000000005.parquet"
    ]
    before = fingerprint(first)
    assert export_shards(store, out) == []  # nothing new, nothing written
    fill(store, range(6, 9), OCT + 86400 * 5)  # crosses into November
    fill(store, range(9, 11), NOV)
    second = export_shards(store, out)
    assert [p.relative_to(out).as_posix() for p in second] == [
        "votes/2026/11/000000000006-000000000010.parquet"
    ]
    assert fingerprint(first) == before  # old shards untouched, byte for byte
    table = read_vote_shards(out)
    assert list(table["row_id"]) == list(range(1, 11)) and table["vote_id"].is_unique


def test_month_change_and_size_split_shards(store, tmp_path: Path) -> None:
    fill(store, range(1, 4), OCT)
    fill(store, range(4, 9), NOV)
    names = [p.relative_to(tmp_path).as_posix() for p in export_shards(store, tmp_path, max_rows=3)]
    assert names == [
        "votes/2026/10/000000000001-000000000003.parquet",
        "votes/2026/11/000000000004-000000000006.parquet",
        "votes/2026/11/000000000007-000000000008.parquet",
    ]


def test_shards_load_with_datasets_offline(store, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    fill(store, range(1, 4), OCT)
    fill(store, range(4, 8), NOV)
    export_shards(store, tmp_path / "export")
    data = datasets.load_dataset(
        "parquet",
        data_files=str(tmp_path / "export" / "votes" / "**" / "*.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert data.num_rows == 7 and data.column_names == list(VOTE_COLUMNS)
    assert sorted(data["vote_id"]) == sorted(f"vote-{n}" for n in range(1, 8))


def test_csv_and_bad_rows(store, tmp_path: Path) -> None:
    fill(store, range(1, 4), OCT)
    frame = pd.read_csv(to_csv(store, tmp_path / "votes.csv"))
    assert len(frame) == 3 and list(frame.columns) == list(VOTE_COLUMNS)
    out = tmp_path / "export"
    (shard,) = export_shards(store, out)
    table = read_vote_shards(out).assign(preference="maybe")
    bad = tmp_path / "bad" / "votes" / shard.name
    bad.parent.mkdir(parents=True)
    table.to_parquet(bad)
    with SQLiteVoteStore(tmp_path / "c.sqlite") as target:
        with pytest.raises(ExportError, match="preference 'maybe'"):
            import_shards(target, tmp_path / "bad")
        assert target.counts()["votes"] == 0

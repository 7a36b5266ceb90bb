"""The released schema: declared once in the card, only ever grown, loadable at every version.

``released_schema.json`` pins the columns each config has released (name -> Arrow type). A column
may be added (and must then be pinned: a release records it); a released column may never be
removed or retyped in its config. The mixed-version test writes shards as each schema version
released them, in the Hub layout with the card, and loads the folder the way the Hub does.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.card import build_card, stats_from_shards, write_dataset_card
from annotation.export import CONFIG, SCHEMA, VOTE_COLUMNS, ExportError, conform, export_shards
from annotation.store import SQLiteVoteStore
from tests.annotation.store.test_sqlite import make_vote

PINNED = json.loads((Path(__file__).parent / "released_schema.json").read_text())
#: Columns each schema version added to the release (version 1 is everything else).
ADDED = {
    2: (
        "loudness_a", "loudness_b", "loudness_matched", "duration_a", "duration_b",
        "instrumental_a", "instrumental_b", "flags", "signed_in",
    ),
    3: ("pool",),
}  # fmt: skip
MONTHS = {1: (2026, 1), 2: (2026, 2), len(ADDED) + 1: (2026, 3)}


def breaking_changes(pinned: dict[str, str], schema: pa.Schema) -> list[str]:
    """What ``schema`` breaks of a config's pinned columns (removed or retyped), in words."""
    now = {field.name: str(field.type) for field in schema}
    return [
        f"{name}: {kind} -> {now.get(name, 'removed')}"
        for name, kind in pinned.items()
        if now.get(name) != kind
    ]


def columns_at(version: int) -> list[str]:
    later = {name for v, names in ADDED.items() if v > version for name in names}
    return [name for name in SCHEMA.names if name not in later]


def test_released_columns_are_never_removed_or_retyped() -> None:
    assert CONFIG in PINNED, f"config {CONFIG!r} is not pinned in released_schema.json"
    assert breaking_changes(PINNED[CONFIG], SCHEMA) == [], (
        "a released column was removed or retyped; start a new config instead"
    )
    unpinned = [name for name in SCHEMA.names if name not in PINNED[CONFIG]]
    assert unpinned == [], f"pin the new columns {unpinned} in released_schema.json"
    assert all(field.nullable for field in SCHEMA)  # old shards load with nulls


def test_the_check_catches_a_removed_or_retyped_column() -> None:
    pinned = PINNED[CONFIG]
    removed = pa.schema([f for f in SCHEMA if f.name != "flags"])
    retyped = pa.schema([f.with_type(pa.int64()) if f.name == "prompt" else f for f in SCHEMA])
    added = pa.schema([*SCHEMA, pa.field("new_column", pa.string())])
    assert breaking_changes(pinned, removed) == ["flags: string -> removed"]
    assert breaking_changes(pinned, retyped) == ["prompt: string -> int64"]
    assert breaking_changes(pinned, added) == []
    shard = pa.table({"prompt": pa.array([1], pa.int64())})
    with pytest.raises(ExportError, match=r"prompt.*new config"):
        conform(shard)


@pytest.fixture
def mixed_folder(tmp_path: Path, settings) -> tuple[Path, dict[int, int]]:
    """The Hub layout: a shard per schema version (one month each) and the card."""
    folder = tmp_path / "repo"
    rows = {}
    with SQLiteVoteStore(tmp_path / "votes.sqlite") as store:
        n = 0
        for version, (year, month) in MONTHS.items():
            t = datetime(year, month, 3, tzinfo=timezone.utc).timestamp()
            rows[version] = 3 + version
            for _ in range(rows[version]):
                n += 1
                store.insert_vote(make_vote(n, t=t + n, flags="too_fast" if n % 2 else ""))
        shards = export_shards(store, folder)
    for version, shard in zip(MONTHS, sorted(shards), strict=True):
        table = pq.read_table(shard)  # rewritten as that version wrote it
        pq.write_table(table.select(columns_at(version)), shard)
    write_dataset_card(folder, build_card(stats_from_shards(folder), settings=settings))
    return folder, rows


def test_every_schema_version_loads_through_the_card(mixed_folder, tmp_path) -> None:
    import datasets

    folder, rows = mixed_folder
    first = min((folder / "votes").rglob("*.parquet"))
    assert "flags" not in pq.read_schema(first).names  # the oldest shard sorts first
    data = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
    assert data.num_rows == sum(rows.values())
    assert data.column_names == list(VOTE_COLUMNS)
    frame = data.to_pandas()
    month = pd.to_datetime(frame["timestamp"], unit="s", utc=True).dt.month
    for version, (_, m) in MONTHS.items():
        part = frame[month == m]
        assert len(part) == rows[version]
        for name in set(SCHEMA.names) - set(columns_at(version)):
            assert part[name].isna().all(), (version, name)  # nulls where it was absent
        for name in ("vote_id", "preference", "source"):
            assert part[name].notna().all(), (version, name)
    assert frame.loc[month == MONTHS[1][1], "flags"].isna().all()
    assert set(frame.loc[month == MONTHS[2][1], "flags"]) == {"", "too_fast"}
    files = sorted((folder / "votes").rglob("*.parquet"))
    by_pandas = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    by_arrow = pa.concat_tables([conform(pq.read_table(f)) for f in files])
    assert len(by_pandas) == by_arrow.num_rows == data.num_rows
    assert set(schema.names) == set(VOTE_COLUMNS)


def test_the_cards_how_to_load_code_runs(mixed_folder, monkeypatch, tmp_path) -> None:
    import huggingface_hub

    folder, rows = mixed_folder
    card = (folder / "README.md").read_text()
    section = card.split("## How to load", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2
    # The Hub is the only stand-in: its repo is this folder (load_dataset takes a folder as is).
    # A fresh datasets cache: the variable is read when datasets is imported, so set the value
    # it was read into (a shared cache served an older folder's rows at the same tmp path).
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(folder))
    for code in blocks:
        scope: dict = {}
        exec(code.replace("<owner>/<name>", str(folder)), scope)  # the card's own code
        assert len(scope["df"]) == sum(rows.values())
        assert set(scope["df"].columns) == set(VOTE_COLUMNS)
    assert any((tmp_path / "cache").iterdir()), "load_dataset did not use the fresh cache"

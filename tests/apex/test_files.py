"""apex.files: atomic writes leave the old file or the new one, never half, and no temp behind."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from apex.files import (
    atomic_path,
    is_partial,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "votes.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        assert is_partial(tmp) and tmp.parent == tmp_path
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["votes.parquet"]


def test_temp_never_matches_a_glob_of_the_target_suffix(tmp_path):
    target = tmp_path / "shard-0001.parquet"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        assert list(tmp_path.glob("*.parquet")) == []
    assert list(tmp_path.glob("*.parquet")) == [target]


def test_concurrent_writers_get_distinct_temps_and_one_whole_result(tmp_path):
    target = tmp_path / "champion.json"
    payloads = [json.dumps({"writer": i, "pad": "x" * 50_000}) for i in range(8)]
    threads = [threading.Thread(target=write_text_atomic, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["champion.json"]


def test_json_refuses_non_json_before_touching_target(tmp_path):
    target = tmp_path / "meta.json"
    write_json_atomic(target, {"b": 1, "a": [1.5, None]})
    assert json.loads(target.read_text()) == {"a": [1.5, None], "b": 1}
    with pytest.raises(TypeError):
        write_json_atomic(target, {"when": object()})
    assert json.loads(target.read_text()) == {"a": [1.5, None], "b": 1}


def test_sha256_file_matches_hashlib_across_block_boundary(tmp_path):
    data = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB blocks and a tail
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_exclusive_creates_once_and_never_replaces(tmp_path):
    target = tmp_path / "votes" / "000-009.parquet"
    with atomic_path(target, exclusive=True) as tmp:
        tmp.write_bytes(b"first")
    with pytest.raises(FileExistsError), atomic_path(target, exclusive=True) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["000-009.parquet"]  # no leftover


def test_atomic_dir_keeps_a_folder_another_writer_completed_only_when_asked(tmp_path):
    from apex.files import atomic_dir

    target = tmp_path / "export"
    with atomic_dir(target) as staging:
        (staging / "rows.txt").write_text("first")
    with atomic_dir(target, exist_ok=True) as staging:  # same state exported twice: first stays
        (staging / "rows.txt").write_text("second")
    assert (target / "rows.txt").read_text() == "first"
    with pytest.raises(OSError), atomic_dir(target) as staging:
        (staging / "rows.txt").write_text("third")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left

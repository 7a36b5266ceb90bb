"""SQLite only on a local disk: a store on a network or FUSE mount is refused, with the fix.

The mount table is the boundary (:func:`annotation.store.sqlite.read_mountinfo`): the tests hand
the real check a table in which the temporary folder is a bucket volume (FUSE), an NFS share, or
a plain local disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotation.store import SQLiteVoteStore, StoreError, open_store
from annotation.store import sqlite as sqlite_store
from annotation.store.sqlite import check_local_disk, filesystem_of
from apex.settings import Settings, default_data_dir


def _table(mount: Path, fstype: str) -> str:
    return "\n".join(
        [
            "22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l",
            "23 22 0:22 / /proc rw - proc proc rw",
            f"97 22 0:90 / {mount} rw,nosuid,nodev - {fstype} bucket rw,user_id=1000",
        ]
    )


@pytest.mark.parametrize("fstype", ["fuse", "fuse.hf-mount", "fuse.s3fs", "nfs4", "cifs"])
def test_store_on_a_network_or_fuse_mount_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    bucket = tmp_path / "data"
    monkeypatch.setattr(sqlite_store, "read_mountinfo", lambda: _table(bucket, fstype))
    settings = Settings.from_env({}, data_dir=bucket / "apex")
    with pytest.raises(StoreError) as refused:
        open_store(settings)
    message = str(refused.value)
    assert f"a {fstype} mount" in message and str(bucket) in message
    assert "APEX_DATA_DIR" in message and "APEX_DATABASE_URL" in message
    assert not (bucket / "apex" / "votes.sqlite").exists()  # refused before any file is made


def test_store_on_local_disk_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "var"
    monkeypatch.setattr(sqlite_store, "read_mountinfo", lambda: _table(tmp_path / "x", "fuse"))
    store = SQLiteVoteStore(local / "votes.sqlite")  # on "/" (overlay): a local file system
    try:
        assert store.counts()["votes"] == 0
    finally:
        store.close()


def test_the_innermost_mount_decides(tmp_path: Path) -> None:
    table = _table(tmp_path, "fuse") + f"\n98 97 8:1 / {tmp_path}/local rw - ext4 /dev/sda1 rw"
    assert filesystem_of(tmp_path / "local" / "votes.sqlite", table) == (
        f"{tmp_path}/local",
        "ext4",
    )
    assert filesystem_of(tmp_path / "other" / "votes.sqlite", table) == (str(tmp_path), "fuse")
    check_local_disk(tmp_path / "local" / "votes.sqlite", table)  # no error
    assert filesystem_of("/x", "") is None  # no mount table (not Linux): nothing to refuse


def test_mount_points_with_spaces_are_decoded(tmp_path: Path) -> None:
    spaced = tmp_path / "my bucket"
    table = _table(Path(str(spaced).replace(" ", "\\040")), "fuse")
    with pytest.raises(StoreError, match="my bucket"):
        check_local_disk(spaced / "votes.sqlite", table)


def test_the_real_mount_table_lets_the_test_folder_through(tmp_path: Path) -> None:
    found = filesystem_of(tmp_path, sqlite_store.read_mountinfo())
    assert found is None or found[1].split(".")[0] not in sqlite_store.NETWORK_FS


def test_the_data_dir_is_local_by_default_and_caches_may_move() -> None:
    assert default_data_dir() == Path("var").resolve()  # never /data: that is a bucket now
    settings = Settings.from_env({"APEX_DATA_DIR": "/tmp/apex-x"})
    assert settings.cache_dir == Path("/tmp/apex-x/cache")
    moved = Settings.from_env({"APEX_DATA_DIR": "/tmp/apex-x", "APEX_CACHE_DIR": "/data/cache"})
    assert moved.cache_dir == Path("/data/cache") and moved.store_path.parent == moved.data_dir
    assert Settings.from_env({}, cache_root="/b").cache_dir == Path("/b")

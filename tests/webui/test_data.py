"""Data tab (:mod:`webui.data`): exports round-trip and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.webui.conftest import files_under
from webui import data
from webui.uploads import upload_root


def test_data_export_round_trips(store_services) -> None:
    from annotation.export import VOTE_COLUMNS

    parquet, csv, rows = data.export_files(store_services)
    assert rows == 14
    frame = pd.read_parquet(parquet)
    assert list(frame.columns) == list(VOTE_COLUMNS) and len(frame) == 14
    assert len(pd.read_csv(csv)) == 14
    assert list(data.columns_frame()["column"]) == list(VOTE_COLUMNS)
    summary = data.summary_markdown(store_services, rows, {"message": "kept locally"})
    assert "14 votes" in summary and "APEX_VOTES_REPO" in summary


def test_repeated_exports_leave_no_new_files(
    store_services, make_vote, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(system_tmp))
    first = data.export_files(store_services)
    files = files_under(tmp_path)
    for _ in range(5):
        assert data.export_files(store_services) == first  # the same cached files
    assert files_under(tmp_path) == files and not files_under(system_tmp)
    # A new vote rebuilds the export once and removes the old one.
    store_services.store.insert_vote(make_vote(99, "good", "bad", "A", True, 0.7))
    parquet, _csv, rows = data.export_files(store_services)
    assert rows == 15 and len(pd.read_parquet(parquet)) == 15
    assert not Path(first[0]).exists() and len(files_under(tmp_path)) == len(files)


def test_a_failed_export_leaves_no_staging_folder(store_services, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)  # after the Parquet is written
    with pytest.raises(OSError, match="disk full"):
        data.export_files(store_services)
    assert not list(upload_root().iterdir())  # no staging folder, no half export
    monkeypatch.undo()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    parquet, csv, rows = data.export_files(store_services)  # the next export works
    assert rows == 14 and Path(csv).exists() and Path(parquet).exists()


def test_the_sync_line_says_how_many_votes_wait_and_since_when(store_services) -> None:
    from annotation.sync import VoteSync
    from tests.annotation.sync.test_service import REPO, RecordingHub

    settings = store_services.settings.replace(votes_repo=REPO)
    sync = VoteSync(settings, store_services.store, api=RecordingHub())
    status = sync.status().to_dict()  # nothing pushed yet: every vote waits
    oldest = pd.to_datetime(store_services.store.votes_frame()["timestamp"].min(), unit="s")
    summary = data.summary_markdown(store_services, 14, status)
    assert "**Sync:**" in summary and "14 votes not on the Hub yet" in summary
    assert f"the oldest from {oldest:%Y-%m-%d %H:%M} UTC" in summary
    assert status["pending_since"].startswith(f"{oldest:%Y-%m-%d}")
    assert sync.push_now().ok
    assert "every vote is on the Hub" in data.summary_markdown(
        store_services, 14, sync.status().to_dict()
    )

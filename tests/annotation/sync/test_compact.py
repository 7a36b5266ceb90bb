"""The commit budget: monthly compaction in one commit, never losing or duplicating a vote, and at
most ``1440 / sync_minutes`` commits over a simulated day. The Hub is :class:`RecordingHub`."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from annotation.store import SQLiteVoteStore
from annotation.sync import SystemClock, VoteSync
from tests.annotation.sync.test_service import (
    FAST,
    REPO,
    RecordingHub,
    SimClock,
    vote,
)

JAN = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
FEB = datetime(2026, 2, 2, tzinfo=timezone.utc).timestamp()


class SettableClock(SystemClock):
    """Real waits; the date is whatever the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


class Killed(BaseException):
    """The process dies here (nothing catches it, as nothing survives a SIGKILL)."""


@pytest.fixture
def store(settings):
    with SQLiteVoteStore(settings.store_path) as s:
        yield s


def cast(store, n: int, t: float) -> None:
    first = len(store.votes_frame())
    for i in range(first, first + n):
        assert store.insert_vote(vote(i, t=t + i))


def loaded(hub: RecordingHub, folder: Path) -> pd.DataFrame:
    """The repo as ``datasets.load_dataset`` reads it, through its card, sorted by row."""
    import datasets

    data = datasets.load_dataset(
        str(hub.write_to(folder)), split="train", cache_dir=str(folder.parent / "cache")
    )
    return data.to_pandas().sort_values("row_id", ignore_index=True)


def month_files(hub: RecordingHub, month: str) -> list[str]:
    return sorted(p for p in hub.files if p.startswith(f"votes/{month}/"))


def test_forty_pushes_compact_into_one_file_with_the_same_rows(settings, store, tmp_path):
    clock = SettableClock(JAN)
    hub = RecordingHub(clock=clock)
    sync = VoteSync(settings.replace(votes_repo=REPO), store, api=hub, backoff=FAST, clock=clock)
    for push in range(40):
        cast(store, 3, JAN + 3_600.0 * push)
        assert sync.push_now().ok
    assert len(month_files(hub, "2026/01")) == 40 and len(hub.commits) == 40
    before = loaded(hub, tmp_path / "before")
    clock.now = FEB  # January has ended: its shards are due
    cast(store, 2, FEB)
    assert sync.push_now().ok
    assert len(hub.commits) == 41  # the new shard and the compaction: one commit
    (compacted,) = month_files(hub, "2026/01")
    assert len(hub.deleted) == 40 and compacted not in hub.deleted
    assert pq.read_table(io.BytesIO(hub.files[compacted])).num_rows == 120
    after = loaded(hub, tmp_path / "after")
    january = after[after["timestamp"] < FEB].reset_index(drop=True)
    pd.testing.assert_frame_equal(january, before)  # the same rows, every column
    assert len(after) == 122 and after["vote_id"].is_unique
    assert sorted(after["vote_id"]) == sorted(store.votes_frame()["vote_id"])
    local = sorted(p.name for p in (settings.export_dir / "votes/2026/01").iterdir())
    assert local == [compacted.rsplit("/", 1)[1]]  # the export folder mirrors the repo
    cast(store, 1, FEB + 60)
    status = sync.push_now()  # the next push's card records the compaction
    card = hub.files["README.md"].decode()
    assert f"- `{compacted}`: 40 shards, 120 votes" in card
    assert status.ok and status.pending_votes == 0 and hub.shard_rows() == 123
    sync.stop(push=False)


def test_an_interrupted_compaction_leaves_the_repo_and_folder_as_they_were(
    settings, store, tmp_path
):
    clock = SettableClock(JAN)
    hub = RecordingHub(clock=clock)
    sync = VoteSync(settings.replace(votes_repo=REPO), store, api=hub, backoff=FAST, clock=clock)
    for push in range(5):
        cast(store, 2, JAN + 3_600.0 * push)
        sync.push_now()
    folder = settings.export_dir
    repo_before = dict(hub.files)
    local_before = {p: p.read_bytes() for p in (folder / "votes").rglob("*") if p.is_file()}
    clock.now = FEB
    hub.commit_errors = [Killed()]  # killed after the file was written, before the commit
    with pytest.raises(Killed):
        sync.push_now()
    assert list((folder / ".compact").rglob("*.parquet"))  # the compacted file was written
    assert hub.files == repo_before and not hub.deleted  # the repo is as it was
    local_after = {p: p.read_bytes() for p in (folder / "votes").rglob("*") if p.is_file()}
    assert local_after == local_before
    fresh = VoteSync(settings.replace(votes_repo=REPO), store, api=hub, clock=clock)  # restart
    assert fresh.push_now().ok
    assert len(month_files(hub, "2026/01")) == 1 and hub.shard_rows() == 10
    assert loaded(hub, tmp_path / "repo")["vote_id"].is_unique


def test_a_compaction_whose_answer_was_lost_is_not_committed_twice(settings, store, tmp_path):
    class LostAnswer(RecordingHub):
        lose = True

        def create_commit(self, *args, **kwargs):
            info = super().create_commit(*args, **kwargs)
            if self.lose and self.deleted:  # the commit landed; the reply never arrived
                self.lose = False
                raise ConnectionError("connection reset by peer")
            return info

    clock = SettableClock(JAN)
    hub = LostAnswer(clock=clock)
    sync = VoteSync(settings.replace(votes_repo=REPO), store, api=hub, backoff=FAST, clock=clock)
    for push in range(3):
        cast(store, 2, JAN + 3_600.0 * push)
        sync.push_now()
    clock.now = FEB
    assert sync.push_now().state == "offline"
    commits = len(hub.commits)
    assert sync.push_now().ok  # finishes locally: nothing left to send
    assert len(hub.commits) == commits and hub.shard_rows() == 6
    local = list((settings.export_dir / "votes/2026/01").iterdir())
    assert [p.name for p in local] == [month_files(hub, "2026/01")[0].rsplit("/", 1)[1]]
    assert sync.status().pending_votes == 0


def test_the_commit_budget_holds_over_a_simulated_day(settings, store):
    settings = settings.replace(votes_repo=REPO)
    assert settings.sync_minutes == 60.0  # the default a Space owner gets
    budget = int(24 * 60 / settings.sync_minutes)
    start = datetime(2026, 1, 31, 12, tzinfo=timezone.utc).timestamp()  # a month ends midday

    def votes_meanwhile(t0: float, t1: float) -> None:  # one vote a minute
        for t in range(int(t0) + 60, int(t1) + 1, 60):
            store.insert_vote(vote(int((t - start) // 60), t=float(t)))

    clock = SimClock(start, until=start + 86_400.0 - 1, advance=votes_meanwhile)
    hub = RecordingHub(clock=clock)
    sync = VoteSync(settings, store, api=hub, clock=clock).start()
    assert clock.parked.wait(60)
    day = [c for c in hub.commits if start <= c["at"] < start + 86_400.0]
    assert len(day) == len(hub.commits) == budget == 24
    assert len(month_files(hub, "2026/01")) == 1  # January compacted within the budget
    votes_meanwhile(clock.now, start + 86_400.0 - 1)  # the loop is parked: no race
    sync.stop()  # the graceful stop's push: the one commit outside the schedule
    rows = pd.concat(
        pq.read_table(io.BytesIO(d)).to_pandas()
        for p, d in hub.files.items()
        if p.endswith(".parquet")
    )
    assert len(rows) == len(store.votes_frame()) == 1439 and rows["vote_id"].is_unique


def test_a_restart_waits_for_the_interval_since_the_last_push(settings, store):
    settings = settings.replace(votes_repo=REPO)
    clock = SettableClock(JAN)
    hub = RecordingHub(clock=clock)
    cast(store, 2, JAN - 600)
    assert VoteSync(settings, store, api=hub, clock=clock).push_now().ok
    cast(store, 2, JAN + 60)
    later = SimClock(JAN + 600, until=JAN + 3_600.0 + 30)  # restarted 10 minutes later
    hub.clock = later
    sync = VoteSync(settings, store, api=hub, clock=later).start()
    assert later.parked.wait(30)
    sync.stop(push=False)
    assert [c["at"] for c in hub.commits] == [JAN, JAN + 3_600.0]  # not at the restart


def test_an_export_folder_copied_before_a_compaction_keeps_each_vote_once(
    settings, store, tmp_path, monkeypatch
):
    from annotation.export import read_vote_shards
    from apex.cli import main

    monkeypatch.setenv("APEX_DATA_DIR", str(settings.data_dir))
    clock = SettableClock(JAN)
    sync = VoteSync(settings.replace(votes_repo=REPO), store, api=RecordingHub(), clock=clock)
    for push in range(3):
        cast(store, 2, JAN + 3_600.0 * push)
        sync.push_now()
    out = tmp_path / "copy"
    assert main(["votes", "export", "--out", str(out)]) == 0
    clock.now = FEB
    assert sync.push_now().ok  # January compacted in the export folder
    assert main(["votes", "export", "--out", str(out)]) == 0
    assert len(list((out / "votes/2026/01").iterdir())) == 1
    copied = read_vote_shards(out)
    assert len(copied) == 6 and copied["vote_id"].is_unique

"""Hub sync: uploads, append-only history, retries and incidents, offline start-up, restore.

The Hub client is the only thing replaced: :class:`RecordingHub` stands in for ``HfApi`` at the
network boundary (``create_repo``, ``create_commit``, ``snapshot_download``) and keeps the files a
real dataset repo would hold. Everything else (the push loop, the store, the shard
export and import) is the real code; :class:`SimClock` runs the loop on simulated time.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pandas as pd
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects

from annotation.export import export_shards
from annotation.store import SQLiteVoteStore, VoteRecord
from annotation.sync import (
    Backoff,
    SystemClock,
    VoteSync,
    describe_error,
    restore_from_folder,
)

REPO = "apex-arena/votes-test"
TOKEN = "hf_FAKEsecretTOKEN0123456789abcdef"
FAST = Backoff(initial_s=0.01, factor=2.0, max_s=0.05)
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


class JanuaryClock(SystemClock):
    """Real waits, but the date stays in January 2026 (the votes' month is not closed yet)."""

    def time(self) -> float:
        return T0 + 10 * 86_400.0


JANUARY = JanuaryClock()


class SimClock:
    """Simulated time for the push loop: a wait returns at once, ``advance`` called with the span
    (so a test adds the votes cast meanwhile); past ``until`` the loop parks until it is stopped."""

    def __init__(self, t0: float, until: float, advance=None) -> None:
        self.now, self.until, self.advance = t0, until, advance
        self.parked = threading.Event()

    def time(self) -> float:
        return self.now

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        target = self.now + max(0.0, seconds)
        if stop.is_set() or target > self.until:
            self.parked.set()
            return stop.wait()
        if self.advance is not None:
            self.advance(self.now, target)
        self.now = target
        return stop.is_set()


class RecordingHub:
    """Records what a dataset repo on the Hub would receive; raises injected errors in order."""

    def __init__(self, token: str | None = TOKEN, clock=time) -> None:
        self.token, self.clock = token, clock
        self.files: dict[str, bytes] = {}
        self.commits: list[dict] = []
        self.repos: list[dict] = []
        self.overwritten: list[str] = []
        self.deleted: list[str] = []
        self.connect_errors: list[BaseException] = []
        self.commit_errors: list[BaseException] = []
        self.download_errors: list[BaseException] = []
        self.commit_calls = 0

    def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False, **_):
        self.repos.append({"repo_id": repo_id, "private": private, "repo_type": repo_type})
        if self.connect_errors:
            raise self.connect_errors.pop(0)
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, **kw):
        """Applies all operations or none, as the Hub does; deleting a missing file is a 404."""
        self.commit_calls += 1
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        assert kw.get("create_pr") in (None, False)
        files, paths = dict(self.files), []
        for op in operations:
            if isinstance(op, CommitOperationDelete):
                if op.path_in_repo not in files:
                    raise http_error(404, f"{op.path_in_repo} does not exist")
                del files[op.path_in_repo]
                self.deleted.append(op.path_in_repo)
                continue
            assert isinstance(op, CommitOperationAdd), f"unexpected operation {op!r}"
            with op.as_file() as fh:
                data = fh.read()
            if op.path_in_repo in files and files[op.path_in_repo] != data:
                self.overwritten.append(op.path_in_repo)
            files[op.path_in_repo] = data
            paths.append(op.path_in_repo)
        self.files = files
        self.commits.append(
            {
                "repo_id": repo_id,
                "repo_type": repo_type,
                "paths": paths,
                "msg": commit_message,
                "at": self.clock.time(),
            }
        )
        return SimpleNamespace(oid=f"c{len(self.commits)}")

    def list_repo_files(self, repo_id, *, repo_type=None, **_):
        assert repo_type == "dataset"
        return sorted(self.files)

    def snapshot_download(self, repo_id, *, repo_type=None, allow_patterns=None, local_dir=None):
        assert repo_type == "dataset"
        if self.download_errors:
            raise self.download_errors.pop(0)
        for rel in filter_repo_objects(self.files, allow_patterns=allow_patterns):
            dest = Path(local_dir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(self.files[rel])
        return str(local_dir)

    def write_to(self, folder: Path) -> Path:
        """The repo's files in a local folder (what a download would give)."""
        for rel, data in self.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        return folder

    def shard_rows(self) -> int:
        return sum(
            pq.read_table(io.BytesIO(data)).num_rows
            for rel, data in self.files.items()
            if rel.endswith(".parquet")
        )


def http_error(code: int, message: str = "", retry_after: str | None = None) -> HfHubHTTPError:
    request = httpx2.Request("POST", f"https://huggingface.co/api/datasets/{REPO}/commit/main")
    headers = {"Retry-After": retry_after} if retry_after else {}
    response = httpx2.Response(code, request=request, headers=headers)
    return HfHubHTTPError(f"{code} Client Error: {message or 'refused'}", response=response)


def vote(i: int, *, t: float | None = None) -> VoteRecord:
    return VoteRecord(
        vote_id=f"v{i:05d}",
        battle_uuid=f"b{i:05d}",
        timestamp=T0 + 60.0 * i if t is None else t,
        user_pseudonym=f"u{i % 3}",
        session_pseudonym=f"s{i % 3}",
        prompt="calm piano",
        is_instrumental=True,
        system_a=f"sys{i % 4}",
        system_b=f"sys{(i + 1) % 4}",
        clip_a=f"c{i}a",
        clip_b=f"c{i}b",
        audio_a=f"audio/c{i}a.wav",
        audio_b=f"audio/c{i}b.wav",
        preference=("A", "B", "TIE", "BOTH_BAD")[i % 4],
        total_listening_time_a=6.0,
        total_listening_time_b=7.5,
    )


def add_votes(store: SQLiteVoteStore, first: int, n: int) -> None:
    for i in range(first, first + n):
        assert store.insert_vote(vote(i))


@pytest.fixture
def hub_settings(settings):
    return settings.replace(votes_repo=REPO, votes_private=True, sync_minutes=5.0)


@pytest.fixture
def store(hub_settings):
    with SQLiteVoteStore(hub_settings.store_path) as s:
        yield s


def wait_for(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def test_push_uploads_shards_and_card_to_repo_paths(hub_settings, store):
    hub = RecordingHub()
    add_votes(store, 0, 5)
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY).start()
    status = sync.push_now()
    sync.stop()
    assert hub.repos[0] == {"repo_id": REPO, "private": True, "repo_type": "dataset"}
    assert {c["repo_type"] for c in hub.commits} == {"dataset"}
    assert sorted(hub.files) == ["README.md", "votes/2026/01/000000000001-000000000005.parquet"]
    assert hub.shard_rows() == 5
    assert "votes/**/*.parquet" in hub.files["README.md"].decode()
    assert status.ok and status.pending_votes == 0 and status.last_push_at is not None
    assert sync.status().state == "stopped"


def test_second_push_only_adds_new_shards(hub_settings, store):
    hub = RecordingHub()
    add_votes(store, 0, 4)
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY).start()
    sync.push_now()
    first = dict(hub.files)
    add_votes(store, 4, 3)
    assert sync.status().pending_unexported == 3
    sync.push_now()
    sync.stop()
    new_paths = [p for c in hub.commits[1:] for p in c["paths"]]
    assert "votes/2026/01/000000000005-000000000007.parquet" in new_paths
    assert not [p for p in new_paths if p in first and p.endswith(".parquet")]
    assert hub.overwritten == ["README.md"]  # only the card is ever refreshed
    assert "| Votes | 7 |" in hub.files["README.md"].decode()
    assert all(hub.files[p] == data for p, data in first.items() if p.endswith(".parquet"))
    assert hub.shard_rows() == 7
    # A restart (fresh service, same data directory) remembers what the repo holds.
    commits = len(hub.commits)
    again = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY)
    assert again.push_now().ok and again.status().pending_votes == 0
    again.stop()
    assert len(hub.commits) == commits


def test_the_loop_pushes_every_interval_retries_after_backoff_and_pushes_at_stop(
    hub_settings, store
):
    minutes = hub_settings.sync_minutes

    def cast(start: float, end: float) -> None:  # one vote a minute of simulated time
        for t in range(int(start) + 60, int(end) + 1, 60):
            store.insert_vote(vote(len(store.votes_frame()), t=float(t)))

    clock = SimClock(T0, until=T0 + 3 * minutes * 60 + 30, advance=cast)
    hub = RecordingHub(clock=clock)
    hub.commit_errors = [http_error(503)]
    add_votes(store, 0, 2)
    sync = VoteSync(hub_settings, store, api=hub, backoff=Backoff(initial_s=45.0), clock=clock)
    sync.start()
    assert clock.parked.wait(10)
    # the first attempt fails; the retry comes after the backoff, then one push per interval
    assert [c["at"] - T0 for c in hub.commits] == [45.0, 45.0 + 300, 45.0 + 600]
    assert hub.commit_calls == 4 and sync.status().ok
    assert sync.status().pending_votes == 0 and sync.status().pending_since is None
    cast(clock.now, clock.until)  # votes cast after the last push
    status = sync.status()
    assert status.pending_votes == 4 and status.pending_since.timestamp() == T0 + 645 + 60
    assert "4 votes not on the Hub yet, the oldest from 2026-01-01 00:11 UTC" in status.message
    status = sync.stop()  # the graceful stop pushes what is left
    assert status.state == "stopped" and status.pending_votes == 0
    assert hub.shard_rows() == len(store.votes_frame()) and len(hub.commits) == 4


def test_a_bug_in_a_round_surfaces_instead_of_becoming_an_incident(
    hub_settings, store, monkeypatch
):
    class BrokenHub(RecordingHub):
        def create_commit(self, *args, **kwargs):
            raise ValueError("a bug in the commit code")

    add_votes(store, 0, 1)
    sync = VoteSync(hub_settings, store, api=BrokenHub(), backoff=FAST, clock=JANUARY)
    with pytest.raises(ValueError, match="a bug"):
        sync.push_now()
    raised = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    sync.start()  # in the background the thread stops with the bug, and the status says so
    wait_for(lambda: raised)
    status = sync.stop(push=False)
    assert isinstance(raised[0], ValueError) and "a bug in the commit code" in status.last_error


@pytest.mark.parametrize(
    ("errors", "kinds"),
    [
        ([http_error(429), http_error(429), http_error(429)], ["rate_limited"]),
        (
            [http_error(429), http_error(412), http_error(503)],
            ["rate_limited", "conflict", "server_error"],
        ),
    ],
)
def test_retries_with_backoff_and_logs_once_per_incident(
    hub_settings, store, caplog, errors, kinds
):
    caplog.set_level(logging.DEBUG)
    hub = RecordingHub()
    hub.commit_errors = list(errors)
    add_votes(store, 0, 3)
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY).start()
    wait_for(lambda: len(hub.commits) == 1 and sync.status().ok)
    status = sync.status()
    sync.stop(push=False)
    assert hub.commit_calls == 4 and hub.shard_rows() == 3
    assert status.ok and status.pending_votes == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(kinds)
    for record, kind in zip(warnings, ["quota", "same time", "server error"], strict=False):
        assert kind in record.getMessage() and REPO in record.getMessage()
    assert any("recovered after 3 failed attempts" in r.getMessage() for r in caplog.records)


def test_failure_shows_in_status_and_nothing_is_lost(hub_settings, store):
    hub = RecordingHub()
    hub.commit_errors = [http_error(503)]
    add_votes(store, 0, 2)
    sync = VoteSync(hub_settings, store, api=hub, backoff=Backoff(initial_s=60.0), clock=JANUARY)
    status = sync.push_now()
    assert status.state == "server_error" and "HTTP 503" in status.last_error
    assert status.pending_votes == 2 and status.pending_exported == 2
    assert status.next_retry_at is not None and status.last_push_at is None
    add_votes(store, 2, 1)  # votes keep landing in the store
    status = sync.push_now()
    sync.stop(push=False)
    assert status.ok and hub.shard_rows() == 3


def test_token_never_reaches_logs_or_status(hub_settings, store, caplog):
    caplog.set_level(logging.DEBUG)
    hub = RecordingHub()
    hub.connect_errors = [ConnectionError(f"proxy said: Authorization: Bearer {TOKEN}")]
    hub.commit_errors = [http_error(401, f"bad token {TOKEN}"), http_error(500, TOKEN)]
    add_votes(store, 0, 1)
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY)
    seen = [sync.push_now().last_error, sync.push_now().last_error, sync.push_now().last_error]
    assert sync.push_now().ok
    sync.stop(push=False)
    assert all(seen) and not any(TOKEN in text for text in seen)
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 3
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
    assert "***" in seen[0] and "write access" in seen[1]


def test_offline_start_up_degrades_then_connects(hub_settings, store):
    hub = RecordingHub()
    hub.connect_errors = [httpx2.ConnectError("Name or service not known")] * 3
    hub.download_errors = [httpx2.ConnectError("Name or service not known")]
    sync = VoteSync(
        hub_settings, store, api=hub, backoff=Backoff(initial_s=0.2, max_s=0.2), clock=JANUARY
    )
    sync.start()  # must not raise
    status = sync.status()
    assert status.state == "offline" and "cannot be reached" in status.last_error
    add_votes(store, 0, 2)  # the app keeps taking votes
    wait_for(lambda: hub.shard_rows() == 2)
    wait_for(lambda: sync.status().ok)
    sync.stop()
    assert len(hub.repos) == 4 and sync.status().pending_votes == 0


def test_missing_token_is_an_incident_not_a_crash(hub_settings, store, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login either
    hub = RecordingHub(token=None)
    add_votes(store, 0, 1)
    sync = VoteSync(
        hub_settings, store, api=hub, backoff=Backoff(initial_s=60.0), clock=JANUARY
    ).start()
    wait_for(lambda: sync.status().state == "no_token")
    status = sync.status()
    sync.stop()
    assert status.state == "no_token" and "HF_TOKEN" in status.last_error
    assert hub.repos == [] and hub.commits == []  # nothing was sent without a token
    assert status.pending_votes == 1


def test_local_only_without_a_repo(settings):
    with SQLiteVoteStore(settings.store_path) as store:
        add_votes(store, 0, 2)
        sync = VoteSync(settings, store, api=RecordingHub(), clock=JANUARY).start()
        status = sync.push_now()
        sync.stop()
    assert status.state == "local" and status.pending_votes == 2 and status.ok
    assert "APEX_VOTES_REPO" in status.message


def test_restore_from_folder_is_idempotent_with_exact_counts(settings, tmp_path):
    with SQLiteVoteStore(tmp_path / "a.sqlite") as source:
        add_votes(source, 0, 7)
        export_shards(source, tmp_path / "repo", max_rows=3)
    with SQLiteVoteStore(settings.store_path) as store:
        assert restore_from_folder(store, tmp_path / "repo") == 7
        assert restore_from_folder(store, tmp_path / "repo") == 0
        assert store.counts()["votes"] == 7
        assert set(store.votes_frame()["vote_id"]) == {f"v{i:05d}" for i in range(7)}
    with pytest.raises(FileNotFoundError, match="votes/"):
        restore_from_folder(store, tmp_path / "missing")


def test_votes_restored_from_a_folder_reach_the_hub(hub_settings, store, tmp_path):
    with SQLiteVoteStore(tmp_path / "a.sqlite") as source:
        add_votes(source, 0, 5)
        export_shards(source, tmp_path / "backup")
    hub = RecordingHub()
    added = restore_from_folder(store, tmp_path / "backup", export_dir=hub_settings.export_dir)
    add_votes(store, 10, 2)
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY)
    assert added == 5 and sync.status().pending_votes == 7
    assert sync.push_now().ok
    sync.stop(push=False)
    assert hub.shard_rows() == 7 and not hub.overwritten


def test_empty_store_restores_from_repo_then_appends(hub_settings, store, tmp_path):
    hub = RecordingHub()
    with SQLiteVoteStore(tmp_path / "old.sqlite") as old:
        add_votes(old, 0, 6)
        old_settings = hub_settings.replace(data_dir=tmp_path / "old-data")
        sync = VoteSync(old_settings, old, api=hub, backoff=FAST, clock=JANUARY).start()
        sync.push_now()
        sync.stop()
    hub.files["other/notes.txt"] = b"not a vote file"
    before = dict(hub.files)
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY).start()
    assert store.counts()["votes"] == hub.shard_rows() == 6  # restored before serving
    assert not (hub_settings.export_dir / "other").exists()  # only vote shards downloaded
    add_votes(store, 100, 2)
    status = sync.push_now()
    sync.stop()
    assert status.ok and status.pending_votes == 0 and hub.shard_rows() == 8
    shard_uploads = [p for c in hub.commits for p in c["paths"] if p.endswith(".parquet")]
    assert len(shard_uploads) == len(set(shard_uploads))  # no shard uploaded twice
    assert all(hub.files[p] == d for p, d in before.items() if p.endswith(".parquet"))
    restored = pd.concat(
        pq.read_table(io.BytesIO(d)).to_pandas()
        for p, d in hub.files.items()
        if p.endswith("parquet")
    )
    assert restored["vote_id"].is_unique and len(restored) == 8


def test_first_start_with_no_repo_yet_creates_it_and_pushes(hub_settings, store):
    hub = RecordingHub()
    request = httpx2.Request("GET", f"https://huggingface.co/api/datasets/{REPO}")
    missing = RepositoryNotFoundError(
        "404: not found", response=httpx2.Response(404, request=request)
    )
    hub.download_errors = [missing]
    sync = VoteSync(hub_settings, store, api=hub, backoff=FAST, clock=JANUARY).start()
    assert sync.status().ok
    add_votes(store, 0, 3)
    sync.stop()
    assert hub.shard_rows() == 3


def test_describe_error_classifies_and_redacts():
    cases = {
        "rate_limited": http_error(429, retry_after="120"),
        "conflict": http_error(412),
        "server_error": http_error(502),
        "auth": http_error(403),
        "http_error": http_error(404),
        "offline": httpx2.ConnectTimeout("timed out"),
        "no_token": LocalTokenNotFoundError("no token"),
        "error": RuntimeError("disk full"),
    }
    for kind, err in cases.items():
        got, message, _ = describe_error(err, REPO)
        assert got == kind, (kind, message)
    assert describe_error(cases["rate_limited"], REPO)[2] == 120.0
    # snapshot_download reports an unreachable Hub as "no local copy either"
    assert describe_error(LocalEntryNotFoundError("Got: ConnectError"), REPO)[0] == "offline"
    assert describe_error(RuntimeError(f"x {TOKEN} y"), REPO)[1].endswith("Error: x *** y)")
    named = describe_error(RuntimeError("custom-secret-value"), REPO, ("custom-secret-value",))
    assert named[1].endswith("RuntimeError: ***)")


def test_backoff_grows_exponentially_and_is_capped():
    backoff = Backoff(initial_s=30.0, factor=2.0, max_s=200.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [30.0, 60.0, 120.0, 200.0, 200.0]
    assert backoff.delay(1, retry_after=600.0) == 600.0  # the Hub's Retry-After wins

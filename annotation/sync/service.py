"""Hub sync: push the append-only vote shards to a dataset repo, and restore an empty store from it.
One thread pushes every ``settings.sync_minutes``; failures in :data:`SYNC_ERRORS` open an incident
and are retried with backoff while votes keep landing locally."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import pyarrow.parquet as pq
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import RepositoryNotFoundError

from annotation.card import CARD_FILE, SHARD_GLOB, build_card, stats_from_shards, write_dataset_card
from annotation.export import ExportError, export_shards, exported_up_to
from annotation.store.records import StoreError
from annotation.sync import compact
from annotation.sync.files import (
    LEDGER_FILE,
    Ledger,
    adopt_shards,
    file_entry,
    files_to_upload,
    local_files,
    restore_from_folder,
)
from annotation.sync.status import Backoff, Incidents, NoToken, SyncStatus
from apex.settings import Settings

if TYPE_CHECKING:
    from annotation.store import VoteStore

__all__ = ["SYNC_ERRORS", "SystemClock", "VoteSync"]

log = logging.getLogger(__name__)

#: What a sync attempt can meet that is not a bug (HTTP errors and cache misses are ``OSError``,
#: timeouts ``httpx2.HTTPError``): each opens an incident and is retried; anything else is raised.
SYNC_ERRORS = (OSError, httpx2.HTTPError, NoToken, StoreError, ExportError)


class SystemClock:
    """Time for the push loop (tests inject one with the same two methods): Unix seconds, and a
    wait that a stop cuts short (True when stopped)."""

    def time(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(max(0.0, seconds))


class VoteSync:
    """Publishes the vote store to ``settings.votes_repo``; ``api`` (default ``HfApi()``, token
    from ``HF_TOKEN`` or the stored login) and ``clock`` are injected for tests. :meth:`start`
    and :meth:`stop` (which pushes once more) run the loop; without :meth:`start` (the CLI),
    :meth:`push_now` makes one attempt and failures are not retried."""

    def __init__(
        self,
        settings: Settings,
        store: VoteStore,
        *,
        api: Any = None,
        backoff: Backoff | None = None,
        clock: SystemClock | None = None,
    ) -> None:
        self.settings, self.store, self.backoff = settings, store, backoff or Backoff()
        self.repo_id = settings.votes_repo
        self._api = api if api is not None else HfApi()
        self._clock = clock or SystemClock()
        self._ledger = Ledger(settings.data_dir / LEDGER_FILE, self.repo_id or "")
        self._incidents = Incidents(self.repo_id, self.backoff)
        self._round = threading.Lock()  # one attempt at a time: the loop, push_now, stop
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._restore_pending = False
        self._card_for: tuple[str, ...] | None = None
        self._rows: dict[tuple[str, int], tuple[int, float | None]] = {}
        self._warned: set[str] = set()

    def start(self) -> VoteSync:
        """Restore an empty store from the repo, then push in the background (Hub trouble opens
        an incident, never raises)."""
        if self.repo_id is None or self._thread is not None:
            return self
        if self.store.counts()["votes"] == 0:
            self._restore_pending = True  # kept until a restore succeeds; pushes wait for it
            try:
                self.restore()
            except SYNC_ERRORS as err:
                self._failed(err, "restoring the votes")
        self._thread = threading.Thread(target=self._loop, name="apex-vote-sync", daemon=True)
        self._thread.start()
        return self

    def push_now(self) -> SyncStatus:
        """Export and push now, ignoring backoff; returns the status (never raises for the Hub)."""
        if self.repo_id is not None and not self._stopping.is_set():
            self._attempt()
        return self.status()

    def stop(self, *, push: bool = True) -> SyncStatus:
        """End the loop (waiting up to 120 s for a push in flight) and push once more, unless
        ``push=False``; what cannot be pushed now stays local for the next start."""
        self._stopping.set()
        running = self._thread is not None or self._connected
        if self._thread is not None:
            self._thread.join(120.0)
            if self._thread.is_alive():
                log.warning("Hub sync: a push is still running after 120 s.")
                push = False
        if push and running:
            self._attempt()
        self._incidents.stopped()
        return self.status()

    def _loop(self) -> None:
        interval = self.settings.sync_minutes * 60.0
        last = self._ledger.last_push
        due = last.timestamp() + interval if last else self._clock.time()
        while not self._clock.wait(self._stopping, due - self._clock.time()):
            try:
                wait = self._attempt()
            except Exception as bug:  # not a Hub failure: shown on the Data tab, then raised
                self._failed(bug, "pushing votes; the push thread stopped on this bug")
                raise
            due = self._clock.time() + (interval if wait is None else wait)

    def _attempt(self) -> float | None:
        """Connect, restore if owed, push; None on success, else the backoff wait in seconds."""
        with self._round:
            try:
                if not self._connected:
                    self._connect()
                if self._restore_pending:
                    self.restore()  # never publish next to an unrestored history
                self._push_once()
            except SYNC_ERRORS as err:
                return self._failed(err, "pushing votes")
            self._incidents.succeeded()
            return None

    def _push_once(self) -> None:
        """Export new votes, rewrite the card when the set of shards changed, stage due
        compactions, then one commit of all."""
        folder, now = self.settings.export_dir, self._clock.time()
        export_shards(self.store, folder)
        on_disk = tuple(rel for rel in local_files(folder) if rel != CARD_FILE)
        if on_disk != self._card_for or not (folder / CARD_FILE).is_file():
            card = build_card(
                stats_from_shards(folder), repo_id=self.repo_id, settings=self.settings
            )
            write_dataset_card(folder, card)
        self._card_for = on_disk
        self._ledger.record({}, removed=tuple(compact.tidy(folder)))
        due = compact.due_months(folder, now)
        staged = [compact.stage(folder, shards) for shards in due.values()]
        gone = {rel for done in staged for rel in done.removed}
        entries = files_to_upload(folder, self._ledger, self._warned)
        entries = {rel: entry for rel, entry in entries.items() if rel not in gone}
        info = self._commit(folder, entries, staged)
        if info is None and not staged:
            return  # nothing new: no commit
        compact.apply(folder, staged)  # only now: an interrupted round leaves all as it was
        for done in staged:
            entries[done.path] = file_entry(folder / done.path)
        pushed_at = now if info is not None else None
        self._ledger.record(entries, removed=tuple(gone), pushed_at=pushed_at)

    def _commit(
        self,
        folder: Path,
        entries: dict[str, dict[str, Any]],
        compactions: list[compact.Compaction],
    ) -> Any:
        """One ``create_commit``: add ``entries`` (paths relative to ``folder``) and carry out
        ``compactions``; None when there is nothing to send. Only what the repo still needs is
        sent (a compaction committed before a kill is not redone)."""
        operations: list[Any] = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=folder / rel) for rel in entries
        ]
        months = []
        if compactions:
            held = set(self._api.list_repo_files(self.repo_id, repo_type="dataset"))
            for done in compactions:
                if done.path not in held:
                    operations.append(CommitOperationAdd(done.path, done.staged))
                operations += [CommitOperationDelete(rel) for rel in done.removed if rel in held]
                months.append(f"{done.path} from {len(done.removed)} shards")
        if not operations:
            return None
        votes = sum(e.get("rows", 0) for e in entries.values())
        message = f"Add {votes} votes ({len(entries)} files)"
        message += f"; compact {', '.join(months)}" if months else ""
        return self._api.create_commit(
            repo_id=self.repo_id, repo_type="dataset", operations=operations, commit_message=message
        )

    def _connect(self) -> None:
        if not self._token():
            raise NoToken("no token")
        self._api.create_repo(
            self.repo_id, repo_type="dataset", private=self.settings.votes_private, exist_ok=True
        )
        self._connected = True

    def status(self) -> SyncStatus:
        """State, last push, last error, pending votes and the oldest of them (footers only)."""
        pending_exported = 0
        oldest: list[float] = []
        for rel, path in local_files(self.settings.export_dir).items():
            if rel == CARD_FILE or rel in self._ledger.files:
                continue
            try:
                rows, first = self._shard_facts(rel, path)
            except FileNotFoundError:
                continue  # compacted away by a push meanwhile
            pending_exported += rows
            oldest += [first] if first is not None else []
        new = self.store.votes_frame(since_row=exported_up_to(self.settings.export_dir))
        new = new[~new["imported"]]  # imported votes are published by their own source
        unexported = len(new)
        oldest += [float(new["timestamp"].min())] if unexported else []
        return self._incidents.status(
            last_push_at=self._ledger.last_push,
            pending_exported=pending_exported,
            pending_unexported=unexported,
            pushed_files=len(self._ledger.files),
            pending_since=datetime.fromtimestamp(min(oldest), timezone.utc) if oldest else None,
        )

    def _shard_facts(self, rel: str, path: Path) -> tuple[int, float | None]:
        """Rows and earliest vote time of a shard (from its footer), cached by size."""
        key = (rel, path.stat().st_size)
        if key not in self._rows:
            meta = pq.read_metadata(path)
            index = meta.schema.to_arrow_schema().get_field_index("timestamp")
            stats = [meta.row_group(g).column(index).statistics for g in range(meta.num_row_groups)]
            mins = [s.min for s in stats if s is not None and s.has_min_max]
            self._rows[key] = (meta.num_rows, min(mins) if mins else None)
        return self._rows[key]

    def restore(self) -> int:
        """Download the repo's shards and card, import the votes (idempotent by vote id) and
        record the files as on the Hub, so none is uploaded again. Returns the votes added.

        Raises:
            ValueError: no repo is configured (set APEX_VOTES_REPO).
            Exception: one of :data:`SYNC_ERRORS`, what the Hub client raised.
        """
        if self.repo_id is None:
            raise ValueError("APEX_VOTES_REPO is not set; set it to the dataset repo to restore.")
        staging = self.settings.data_dir / "hub_restore"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)  # an empty repo downloads nothing, not even the folder
        try:
            self._api.snapshot_download(
                repo_id=self.repo_id,
                repo_type="dataset",
                allow_patterns=[SHARD_GLOB, CARD_FILE],
                local_dir=staging,
            )
        except RepositoryNotFoundError:
            # First start of a new deployment: the repo is created by the first push.
            log.info("Dataset repo %s does not exist yet: nothing to restore.", self.repo_id)
            self._restore_pending = False
            return 0
        added = restore_from_folder(self.store, staging)
        # The ledger describes the repo's copies, so none of them is exported or uploaded again.
        entries = {rel: file_entry(path) for rel, path in local_files(staging).items()}
        adopt_shards(staging, self.settings.export_dir, move=True)
        self._ledger.record(entries)
        shutil.rmtree(staging, ignore_errors=True)
        self._restore_pending = False
        log.info("Restored %d votes from %d files of %s.", added, len(entries), self.repo_id)
        return added

    def _token(self) -> str | None:
        return getattr(self._api, "token", None) or get_token()

    def _failed(self, err: BaseException, doing: str) -> float:
        """Record a failed attempt; returns the wait, seconds."""
        retrying = self._thread is not None
        return self._incidents.failed(err, doing, secrets=(self._token() or "",), retrying=retrying)

"""Hub sync: push the append-only vote shards to a dataset repo, and restore an empty store from it.

:class:`VoteSync` owns a small scheduler (:class:`annotation.sync.scheduler.PushScheduler`, every
``settings.sync_minutes``) on the public ``HfApi``: it creates the dataset repo
(``settings.votes_repo``) with ``create_repo(exist_ok=True)``, and each round exports new votes into
``settings.export_dir`` with :func:`annotation.export.export_shards`, refreshes the dataset card,
then commits only files the repo does not have yet (:mod:`annotation.sync.push`). A ledger of
what the repo holds (``<data_dir>/hub_sync.json``; the ledger and the files it covers are
:mod:`annotation.sync.files`) means a shard is uploaded exactly once, even across restarts, and
nothing is ever deleted (there are no delete operations).

Failures never reach the voters: votes keep landing in the local store. No token, no network,
HTTP 429 (commit quota), 412 (concurrent commit) and 5xx each open an *incident*, logged once with
a message saying what to do (never the token), retried with exponential backoff and shown by
:meth:`VoteSync.status` on the Data tab (the status, backoff and incident bookkeeping are
:mod:`annotation.sync.status`). Start-up offline does not fail either: connecting (creating the
repo) is retried in the background.

The Hub client is injected (``api``: an ``HfApi`` or anything with its ``create_repo``,
``create_commit`` and ``snapshot_download``), which is how the tests replace the network.
"""

from __future__ import annotations

import logging
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import RepositoryNotFoundError

from annotation.card import SHARD_GLOB
from annotation.hub import HUB_ERRORS
from annotation.store.records import StoreError
from annotation.sync.files import (
    LEDGER_FILE,
    Ledger,
    adopt_shards,
    file_entry,
    local_files,
    parquet_rows,
    restore_from_folder,
)
from annotation.sync.push import commit_files, export_with_card, files_to_upload
from annotation.sync.scheduler import PushScheduler
from annotation.sync.status import (
    Backoff,
    Incidents,
    NoToken,
    SyncStatus,
)
from apex.settings import Settings

if TYPE_CHECKING:
    from annotation.store import VoteStore

__all__ = ["SYNC_ERRORS", "VoteSync", "start_sync"]

log = logging.getLogger(__name__)

#: What a sync attempt can meet that is not a bug: the Hub or the network refusing (see
#: :data:`annotation.hub.HUB_ERRORS`), no token, the store unreadable for a moment. Each opens
#: an incident and is retried; anything else is a bug and is raised with its traceback.
SYNC_ERRORS: tuple[type[Exception], ...] = (*HUB_ERRORS, NoToken, StoreError)


class VoteSync:
    """Publishes the vote store to ``settings.votes_repo`` (see the module docstring).

    Args:
        settings: ``votes_repo``, ``votes_private``, ``sync_minutes``, ``export_dir``, rules.
        store: the vote store (:class:`annotation.store.VoteStore`).
        api: Hub client; default ``HfApi()`` (token from ``HF_TOKEN`` or the stored login).
        backoff: waits between failed attempts (connecting or pushing).

    Use as a context manager, or call :meth:`start` and :meth:`stop` (which pushes once more).
    Without :meth:`start` (the CLI) nothing runs in the background: :meth:`push_now` makes one
    attempt and failures are not retried.
    """

    def __init__(
        self,
        settings: Settings,
        store: VoteStore,
        *,
        api: Any = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings, self.store, self.backoff = settings, store, backoff or Backoff()
        self.repo_id = settings.votes_repo
        self._api = api if api is not None else HfApi()
        self._ledger = Ledger(settings.data_dir / LEDGER_FILE, self.repo_id or "")
        self._lock = threading.RLock()  # guards the fields below
        self._round_lock = threading.Lock()  # one push at a time (worker thread or atexit)
        self._connect_lock = threading.Lock()  # one scheduler, however many callers connect
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apex-vote-sync")
        self._queued: Future | None = None
        self._force = False  # the queued round was asked for by push_now: ignore backoff
        self._timer: threading.Timer | None = None
        self._scheduler: PushScheduler | None = None
        self._started = False
        self._incidents = Incidents(self.repo_id, self.backoff, log)
        self._restore_pending = False
        self._card_for: tuple[str, ...] | None = None
        self._rows: dict[tuple[str, int], int] = {}
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, restore: bool = True) -> VoteSync:
        """Restore an empty store from the repo, connect and push; retry in the background.

        Never raises for Hub trouble: it opens an incident (see :meth:`status`) and retries.
        """
        if self.repo_id is None or self._started:
            return self
        self._started = True
        if restore and self.store.counts()["votes"] == 0:
            self._restore_pending = True  # kept until a restore succeeds; pushes wait for it
            try:
                self.restore()
            except SYNC_ERRORS as err:
                self._failed(err, "restoring the votes")
        self._connect_and_push()
        return self

    def push_now(self, timeout: float | None = None) -> SyncStatus:
        """Export and push now, ignoring backoff; returns the status (never raises for the Hub)."""
        if self.repo_id is None or self._stopping.is_set():
            return self.status()
        if self._scheduler is None and not self._try_connect():
            return self.status()
        self._submit(force=True).result(timeout)
        return self.status()

    def stop(self, timeout: float | None = 120.0, *, push: bool = True) -> SyncStatus:
        """Push once more (one attempt, unless ``push=False``), then stop all background work.

        Votes that cannot be pushed now stay in the store and the export folder; the next start
        pushes them.
        """
        self._stopping.set()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        if self._scheduler is not None:
            if push:
                try:
                    self._submit(force=True).result(timeout)
                except FutureTimeout:
                    log.warning("Hub sync: the last push is still running after %s s.", timeout)
            self._scheduler.stop()
        self._executor.shutdown(wait=False)
        self._incidents.stopped()
        return self.status()

    def __enter__(self) -> VoteSync:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def scheduler(self) -> PushScheduler | None:
        """The running scheduler (None until the repo could be reached)."""
        return self._scheduler

    # ------------------------------------------------------------------ status
    def status(self) -> SyncStatus:
        """State, last push, last error and pending votes (cheap: reads Parquet footers only)."""
        exported = pending_exported = 0
        for rel, path in local_files(self.settings.export_dir).items():
            if rel != "README.md":
                rows = self._row_count(rel, path)
                exported += rows
                pending_exported += 0 if rel in self._ledger.files else rows
        unexported = max(0, int(self.store.counts()["votes"]) - exported)
        return self._incidents.status(
            last_push_at=self._ledger.last_push,
            pending_exported=pending_exported,
            pending_unexported=unexported,
            pushed_files=len(self._ledger.files),
        )

    # ------------------------------------------------------------------ restore
    def restore(self) -> int:
        """Download the repo's vote shards and import them (idempotent by vote id).

        The shards are adopted into the export folder and recorded as already on the Hub, so they
        are neither exported nor uploaded again. Returns how many votes were added.

        Raises:
            ValueError: no repo is configured (set APEX_VOTES_REPO).
            Exception: one of :data:`SYNC_ERRORS`, what the Hub client raised (see
                :func:`annotation.sync.status.describe_error`).
        """
        if self.repo_id is None:
            raise ValueError(
                "APEX_VOTES_REPO is not set: there is no dataset repo to restore from."
            )
        staging = self.settings.data_dir / "hub_restore"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)  # an empty repo downloads nothing, not even the folder
        try:
            self._api.snapshot_download(
                repo_id=self.repo_id,
                repo_type="dataset",
                allow_patterns=[SHARD_GLOB],
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
        log.info("Restored %d votes from %d shards of %s.", added, len(entries), self.repo_id)
        return added

    # ------------------------------------------------------------------ rounds
    def _submit(self, *, force: bool = False) -> Future:
        """Queue a push round on the single worker; a round still waiting is reused."""
        with self._lock:
            if self._stopping.is_set() and not force:  # a late timer: the worker is shut down
                done: Future = Future()
                done.set_result(None)
                return done
            self._force = self._force or force
            queued = self._queued
            if queued is None or queued.running() or queued.done():
                queued = self._queued = self._executor.submit(self._run_queued)
            return queued

    def _run_queued(self) -> Any:
        with self._lock:
            force, self._force = self._force, False
        return self._push_round(force=force)

    def _push_round(self, *, force: bool = False, final: bool = False) -> Any:
        """Export and upload once; on failure open or extend the incident and retry later."""
        with self._round_lock:
            if not force and not final and self._incidents.wait_s() > 0:
                return None  # backing off; the retry timer will come back
            try:
                info = self._push_once()
            except SYNC_ERRORS as err:
                delay = self._failed(err, "pushing votes")
                if not final:
                    self._later(delay, self._submit)
                return None
            self._incidents.succeeded()
            return info

    def _push_once(self) -> Any:
        if self._restore_pending:
            self.restore()  # before the first push: never publish next to an unrestored history
        folder = self.settings.export_dir
        self._card_for = export_with_card(self.store, self.settings, self.repo_id, self._card_for)
        entries = files_to_upload(folder, self._ledger, self._warned)
        if not entries:
            return None
        info = commit_files(self._api, self.repo_id, folder, entries)
        self._ledger.record(entries, pushed=True)
        return info

    # ------------------------------------------------------------------ connection and incidents
    def _connect_and_push(self) -> None:
        if self._try_connect():
            self._submit()  # push what accumulated while this process was not running
        else:
            self._later(self._incidents.wait_s(), self._connect_and_push)

    def _try_connect(self) -> bool:
        """Create the repo and start the scheduler; False, with an incident, on failure."""
        with self._connect_lock:  # the retry timer and push_now may race here
            if self._scheduler is not None:
                return True
            return self._connect_locked()

    def _connect_locked(self) -> bool:
        if self._stopping.is_set():
            return False
        try:
            if not self._token():
                raise NoToken("no token")
            self._api.create_repo(
                self.repo_id,
                repo_type="dataset",
                private=self.settings.votes_private,
                exist_ok=True,
            )
        except SYNC_ERRORS as err:
            self._failed(err, "connecting")
            return False
        scheduler = PushScheduler(
            self._submit,
            every=self.settings.sync_minutes,
            repo_id=self.repo_id,
            final_push=lambda: self._push_round(final=True),
        )
        with self._lock:
            self._scheduler = scheduler
        self._incidents.succeeded()
        return True

    def _later(self, delay: float, action: Any) -> None:
        """Run ``action`` after ``delay`` seconds, once, if the service is started and running."""
        with self._lock:
            if not self._started or self._stopping.is_set():
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, action)
            self._timer.daemon = True
            self._timer.start()

    def _token(self) -> str | None:
        return getattr(self._api, "token", None) or get_token()

    def _failed(self, err: BaseException, doing: str) -> float:
        """Record a failed attempt (see :class:`Incidents`); returns the wait, seconds."""
        secrets = (self._token() or "",)
        return self._incidents.failed(err, doing, secrets=secrets, retrying=self._started)

    def _row_count(self, rel: str, path: Path) -> int:
        key = (rel, path.stat().st_size)
        if key not in self._rows:
            self._rows[key] = parquet_rows(path)
        return self._rows[key]


def start_sync(settings: Settings, store: VoteStore, *, api: Any = None) -> VoteSync:
    """Build and start the app's :class:`VoteSync` (restores an empty store first)."""
    return VoteSync(settings, store, api=api).start()

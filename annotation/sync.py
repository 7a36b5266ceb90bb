"""Hub sync: push the append-only vote shards to a dataset repo, and restore an empty store from it.

:class:`VoteSync` is built on :class:`huggingface_hub.CommitScheduler` (repo type ``dataset``,
``settings.votes_repo``, every ``settings.sync_minutes``): before each push it exports new votes
into ``settings.export_dir`` with :func:`annotation.export.export_shards` and refreshes the dataset
card, then commits only files the repo does not have yet. The scheduler's own ``push_to_hub`` is
replaced because the stock one re-uploads by modification time and raises on the first failure;
ours keeps a ledger of what the repo holds (``<data_dir>/hub_sync.json``), so a shard is uploaded
exactly once, even across restarts, and nothing is ever deleted (there are no delete operations).

Failures never reach the voters: votes keep landing in the local store. No token, no network,
HTTP 429 (commit quota), 412 (concurrent commit) and 5xx each open an *incident*, logged once with
a message saying what to do (never the token), retried with exponential backoff and shown by
:meth:`VoteSync.status` on the Data tab. Start-up offline does not fail either: the scheduler is
constructed (it creates the repo) on a background retry loop.

The Hub client is injected (``api``: an ``HfApi`` or anything with its ``create_repo``,
``create_commit`` and ``snapshot_download``), which is how the tests replace the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import CommitOperationAdd, CommitScheduler, HfApi, get_token
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
from huggingface_hub.utils import filter_repo_objects

from annotation.card import SHARD_GLOB, build_card, stats_from_shards, write_card
from apex.settings import Settings

if TYPE_CHECKING:
    from annotation.store import VoteStore

log = logging.getLogger(__name__)

#: What the sync uploads: the shards and the card. Nothing else in the folder ever leaves it.
UPLOAD_PATTERNS: tuple[str, ...] = (SHARD_GLOB, "README.md")
_LEDGER_FILE = "hub_sync.json"
_SECRET = re.compile(r"(hf_[A-Za-z0-9]{6,}|(?i:bearer)\s+\S+)")
_MESSAGES = {
    "no_token": "no Hugging Face token; set HF_TOKEN (write access to {repo}) as a Space secret",
    "offline": "the Hub cannot be reached ({detail})",
    "rate_limited": "the Hub refused the commit: commit quota reached (HTTP 429)",
    "conflict": "another commit reached {repo} at the same time (HTTP 412)",
    "server_error": "the Hub had a server error (HTTP {code})",
    "auth": "the token cannot write to {repo} (HTTP {code}); give HF_TOKEN write access",
    "http_error": "the Hub refused the request (HTTP {code}: {detail})",
    "error": "unexpected failure ({detail})",
}
_HTTP_KINDS = {429: "rate_limited", 412: "conflict", 401: "auth", 403: "auth"}


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between failed attempts: ``initial_s * factor**(failures-1)``, capped.

    Attributes:
        initial_s: wait after the first failure, seconds.
        factor: growth per further failure.
        max_s: longest wait, seconds (a Retry-After from the Hub may ask for longer).
    """

    initial_s: float = 30.0
    factor: float = 2.0
    max_s: float = 3600.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures."""
        base = min(self.max_s, self.initial_s * self.factor ** max(failures - 1, 0))
        return max(base, retry_after or 0.0)


@dataclass(frozen=True)
class SyncStatus:
    """Where the sync stands, for the Data tab and ``apex votes status``.

    Attributes:
        state: ``local`` (no repo configured), ``starting``, ``ok``, ``stopped``, or the open
            incident: ``no_token``, ``offline``, ``rate_limited``, ``conflict``, ``server_error``,
            ``auth``, ``http_error``, ``error``.
        repo_id: the dataset repo, or None.
        last_push_at: when a commit last succeeded (UTC), or None.
        last_error: the open incident's message (no secrets), or None.
        pending_votes: votes not on the Hub yet (= ``pending_exported + pending_unexported``).
        pending_exported: votes in local shards that are not uploaded yet.
        pending_unexported: votes in the store not exported to a shard yet.
        pushed_files: files the repo has received from this data directory.
        next_retry_at: when the next attempt is due while an incident is open (UTC), or None.
    """

    state: str
    repo_id: str | None = None
    last_push_at: datetime | None = None
    last_error: str | None = None
    pending_votes: int = 0
    pending_exported: int = 0
    pending_unexported: int = 0
    pushed_files: int = 0
    next_retry_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when no incident is open."""
        return self.last_error is None

    @property
    def message(self) -> str:
        """One sentence for people."""
        if self.state == "local":
            return "Votes are kept locally (set APEX_VOTES_REPO to publish them on the Hub)."
        when = self.last_push_at.strftime("%Y-%m-%d %H:%M UTC") if self.last_push_at else "never"
        head = f"Hub sync to {self.repo_id}: last push {when}, {self.pending_votes} votes pending."
        return f"{head} Problem: {self.last_error}." if self.last_error else head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (times as ISO 8601 strings), with ``ok`` and ``message``."""
        out = asdict(self)
        for key in ("last_push_at", "next_retry_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return {**out, "ok": self.ok, "message": self.message}


def describe_error(
    err: BaseException, repo_id: str, secrets: tuple[str, ...] = ()
) -> tuple[str, str, float | None]:
    """Classify a Hub failure: ``(kind, message, retry_after_s)``; the message has no secrets."""
    detail = redact(f"{type(err).__name__}: {err}".splitlines()[0][:200], secrets)
    code, retry_after = None, None
    response = getattr(err, "response", None) if isinstance(err, HfHubHTTPError) else None
    if response is not None:
        code = response.status_code
        try:
            retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            retry_after = None
    if isinstance(err, (LocalTokenNotFoundError, _NoToken)):
        kind = "no_token"
    elif code is not None:
        kind = _HTTP_KINDS.get(code) or ("server_error" if code >= 500 else "http_error")
    elif isinstance(err, (ConnectionError, TimeoutError, LocalEntryNotFoundError)) or any(
        c.__name__ == "TransportError"
        for c in type(err).__mro__  # httpx-family network errors
    ):
        kind = "offline"
    else:
        kind = "error"
    return kind, _MESSAGES[kind].format(repo=repo_id, code=code, detail=detail), retry_after


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets and anything shaped like a Hub token replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET.sub("***", text)


class _NoToken(RuntimeError):
    """No token is configured; raised before any request is made."""


class _Ledger:
    """What the repo holds from this data directory: ``repo path -> {sha256, size, rows}``.

    Persisted as JSON so that a restart never uploads a shard twice; tied to one repo id (a new
    repo starts an empty ledger, so everything is uploaded there).
    """

    def __init__(self, path: Path, repo_id: str) -> None:
        self.path, self.repo_id = path, repo_id
        self.files: dict[str, dict[str, Any]] = {}
        self.last_push: datetime | None = None
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("repo_id") == repo_id:
                self.files = data.get("files", {})
                stamp = data.get("last_push_at")
                self.last_push = datetime.fromisoformat(stamp) if stamp else None

    def record(self, entries: dict[str, dict[str, Any]], pushed: bool = False) -> None:
        """Add entries (and the push time when ``pushed``), then save atomically."""
        self.files.update(entries)
        if pushed:
            self.last_push = datetime.now(timezone.utc)
        stamp = self.last_push.isoformat() if self.last_push else None
        data = {"repo_id": self.repo_id, "last_push_at": stamp, "files": self.files}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(self.path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def _entry(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256(path), "size": path.stat().st_size, "rows": _rows(path)}


def _local_files(folder: Path) -> dict[str, Path]:
    """Files under ``folder`` the sync may upload, by repo path (sorted: deterministic commits)."""
    if not folder.is_dir():
        return {}
    found = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    keep = filter_repo_objects(
        found, allow_patterns=list(UPLOAD_PATTERNS), ignore_patterns=DEFAULT_IGNORE_PATTERNS
    )
    return {rel: found[rel] for rel in keep}


class _VoteScheduler(CommitScheduler):
    """A CommitScheduler whose pushes run as :class:`VoteSync` rounds on the sync's own worker."""

    def __init__(self, sync: VoteSync, **kwargs: Any) -> None:
        self._sync = sync  # set first: the base constructor starts the scheduling thread
        super().__init__(**kwargs)

    def _run_scheduler(self) -> None:
        # Replaces the base loop, which pushes the moment it is constructed and sleeps without
        # waking on stop(): VoteSync asks for the start-up push itself (so the order of pushes
        # is known), and the wait below ends as soon as the sync stops.
        while not self._sync._stopping.wait(self.every * 60):
            self.trigger()

    def trigger(self) -> Future:
        """Queue a scheduled push (a round already waiting in the queue is reused)."""
        return self._sync._submit()

    def push_to_hub(self) -> Any:
        """One attempt; the base class calls this from ``atexit`` when the sync was not stopped."""
        return self._sync._push_round(final=True)


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
        self._ledger = _Ledger(settings.data_dir / _LEDGER_FILE, self.repo_id or "")
        self._lock = threading.RLock()  # guards the fields below
        self._round_lock = threading.Lock()  # one push at a time (worker thread or atexit)
        self._connect_lock = threading.Lock()  # one scheduler, however many callers connect
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apex-vote-sync")
        self._queued: Future | None = None
        self._force = False  # the queued round was asked for by push_now: ignore backoff
        self._timer: threading.Timer | None = None
        self._scheduler: _VoteScheduler | None = None
        self._started = False
        self._state = "local" if self.repo_id is None else "starting"
        self._incident: tuple[str, str] | None = None  # (kind, message) of the open incident
        self._failures = 0
        self._not_before = 0.0  # monotonic time before which scheduled pushes wait
        self._next_retry: datetime | None = None
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
            except Exception as err:
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
        with self._lock:
            self._state = "stopped" if self.repo_id else "local"
        return self.status()

    def __enter__(self) -> VoteSync:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def scheduler(self) -> CommitScheduler | None:
        """The running CommitScheduler (None until the repo could be reached)."""
        return self._scheduler

    # ------------------------------------------------------------------ status
    def status(self) -> SyncStatus:
        """State, last push, last error and pending votes (cheap: reads Parquet footers only)."""
        exported = pending_exported = 0
        for rel, path in _local_files(self.settings.export_dir).items():
            if rel != "README.md":
                rows = self._row_count(rel, path)
                exported += rows
                pending_exported += 0 if rel in self._ledger.files else rows
        unexported = max(0, int(self.store.counts()["votes"]) - exported)
        with self._lock:
            open_incident = self._incident is not None and self._state != "stopped"
            return SyncStatus(
                state=self._incident[0] if open_incident else self._state,
                repo_id=self.repo_id,
                last_push_at=self._ledger.last_push,
                last_error=self._incident[1] if self._incident else None,
                pending_votes=pending_exported + unexported,
                pending_exported=pending_exported,
                pending_unexported=unexported,
                pushed_files=len(self._ledger.files),
                next_retry_at=self._next_retry if self._incident else None,
            )

    # ------------------------------------------------------------------ restore
    def restore(self) -> int:
        """Download the repo's vote shards and import them (idempotent by vote id).

        The shards are adopted into the export folder and recorded as already on the Hub, so they
        are neither exported nor uploaded again. Returns how many votes were added.

        Raises:
            ValueError: no repo is configured (set APEX_VOTES_REPO).
            Exception: what the Hub client raised (see :func:`describe_error`).
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
        entries = {rel: _entry(path) for rel, path in _local_files(staging).items()}
        _adopt(staging, self.settings.export_dir, move=True)
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
            if not force and not final and time.monotonic() < self._not_before:
                return None  # backing off; the retry timer will come back
            try:
                info = self._push_once()
            except Exception as err:
                delay = self._failed(err, "pushing votes")
                if not final:
                    self._later(delay, self._submit)
                return None
            self._succeeded()
            return info

    def _push_once(self) -> Any:
        if self._restore_pending:
            self.restore()  # before the first push: never publish next to an unrestored history
        self._export()
        entries: dict[str, dict[str, Any]] = {}
        for rel, path in _local_files(self.settings.export_dir).items():
            known, size = self._ledger.files.get(rel), path.stat().st_size
            if rel != "README.md" and known is not None:
                if known["size"] != size and rel not in self._warned:
                    self._warned.add(rel)
                    log.error(
                        "Shard %s changed after it was uploaded; it is not uploaded again (shards "
                        "are append-only). Move it aside so the exporter writes new shards.",
                        rel,
                    )
                continue
            sha = _sha256(path)
            if known is not None and known["sha256"] == sha:
                continue  # the card, unchanged
            entries[rel] = {"sha256": sha, "size": size} if rel == "README.md" else _entry(path)
        if not entries:
            return None
        votes = sum(e.get("rows", 0) for e in entries.values())
        operations = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=self.settings.export_dir / rel)
            for rel in entries
        ]
        info = self._api.create_commit(
            repo_id=self.repo_id,
            repo_type="dataset",
            operations=operations,
            commit_message=f"Add {votes} votes ({len(operations)} files)",
        )
        self._ledger.record(entries, pushed=True)
        return info

    def _export(self) -> None:
        """Export new votes to shards and refresh the card when the set of shards changed."""
        from annotation.export import export_shards

        folder = self.settings.export_dir
        export_shards(self.store, folder)
        shards = tuple(rel for rel in _local_files(folder) if rel != "README.md")
        if shards != self._card_for or not (folder / "README.md").is_file():
            card = build_card(
                stats_from_shards(folder), repo_id=self.repo_id, settings=self.settings
            )
            write_card(folder, card)
            self._card_for = shards

    # ------------------------------------------------------------------ connection and incidents
    def _connect_and_push(self) -> None:
        if self._try_connect():
            self._submit()  # push what accumulated while this process was not running
        else:
            self._later(max(0.0, self._not_before - time.monotonic()), self._connect_and_push)

    def _try_connect(self) -> bool:
        """Construct the scheduler (it creates the repo); False, with an incident, on failure."""
        with self._connect_lock:  # the retry timer and push_now may race here
            if self._scheduler is not None:
                return True
            return self._connect_locked()

    def _connect_locked(self) -> bool:
        if self._stopping.is_set():
            return False
        try:
            if not self._token():
                raise _NoToken("no token")
            scheduler = _VoteScheduler(
                self,
                repo_id=self.repo_id,
                folder_path=self.settings.export_dir,
                every=self.settings.sync_minutes,
                repo_type="dataset",
                private=self.settings.votes_private,
                allow_patterns=list(UPLOAD_PATTERNS),
                hf_api=self._api,
            )
        except Exception as err:
            self._failed(err, "connecting")
            return False
        with self._lock:
            self._scheduler = scheduler
        self._succeeded()
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
        """Record a failed attempt; log only when it opens a new incident. Returns the wait."""
        kind, message, retry_after = describe_error(err, self.repo_id or "", (self._token() or "",))
        with self._lock:
            self._failures += 1
            delay = self.backoff.delay(self._failures, retry_after)
            self._not_before = time.monotonic() + delay
            self._next_retry = datetime.fromtimestamp(time.time() + delay, timezone.utc)
            new = self._incident is None or self._incident[0] != kind
            self._incident = (kind, message)
        if new:
            then = f"retrying with backoff, next try in {delay:.3g} s" if self._started else ""
            log.warning(
                "Hub sync to %s: %s (while %s). Votes are kept locally%s.",
                self.repo_id,
                message,
                doing,
                f"; {then}" if then else "",
            )
        return delay

    def _succeeded(self) -> None:
        with self._lock:
            if self._incident is not None:
                log.info(
                    "Hub sync to %s recovered after %d failed attempts.",
                    self.repo_id,
                    self._failures,
                )
            self._incident, self._failures, self._not_before = None, 0, 0.0
            self._state, self._next_retry = "ok", None

    def _row_count(self, rel: str, path: Path) -> int:
        key = (rel, path.stat().st_size)
        if key not in self._rows:
            self._rows[key] = _rows(path)
        return self._rows[key]


def restore_from_folder(store: VoteStore, folder: Path, *, export_dir: Path | None = None) -> int:
    """Import every ``votes/**/*.parquet`` shard under ``folder`` (laid out like the dataset repo).

    Idempotent by vote id: importing the same folder twice adds nothing the second time.
    Imported votes are never exported again, so when ``export_dir`` is given the shards it lacks
    are copied there too: the export folder (and the Hub, after the next push) then holds them.

    Returns:
        How many votes were added.
    """
    from annotation.export import import_shards

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds votes/.")
    added = int(import_shards(store, folder))
    if export_dir is not None:
        _adopt(folder, Path(export_dir), move=False)
    return added


def _adopt(folder: Path, export_dir: Path, *, move: bool) -> list[str]:
    """Move or copy the shards under ``folder`` into ``export_dir`` where their path is free.

    A path that is taken keeps the local file: shards are never overwritten.
    """
    adopted = []
    for rel, path in _local_files(folder).items():
        dest = export_dir / rel
        if rel == "README.md" or dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.adopt")
        if move:
            shutil.move(path, tmp)
        else:
            shutil.copy2(path, tmp)
        tmp.replace(dest)  # appears whole, never half-copied, for the exporter and the sync
        adopted.append(rel)
    return adopted


def start_sync(settings: Settings, store: VoteStore, *, api: Any = None) -> VoteSync:
    """Build and start the app's :class:`VoteSync` (restores an empty store first)."""
    return VoteSync(settings, store, api=api).start()

"""A polite, resumable audio downloader that writes an ``apex embed`` manifest: one request at a
time, paced per host; ``Retry-After`` honoured (capped), else exponential backoff. Bytes resume in
``<file>.part``; a verified file gets a ``<file>.sha256`` that lets a rerun skip it."""

from __future__ import annotations

import collections
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from apex.files import sha256_file, write_text_atomic

USER_AGENT = "apex-arena-downloader/1 (research; polite: one request at a time, rate-limited)"
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be downloaded; the message says why and whether retrying may help."""


@dataclass(frozen=True)
class DownloadItem:
    """One file to fetch."""

    id: str  # song id (the manifest key)
    url: str  # http(s)://
    file_name: str  # path under the output folder (e.g. audio/<id>.mp3)
    sha256: str | None = None  # expected hex digest, when the listing publishes one
    meta: dict[str, Any] = field(default_factory=dict)  # other manifest columns carried through


@dataclass(frozen=True)
class DownloadConfig:
    """How politely and how persistently to download (times in seconds)."""

    min_interval_s: float = 1.0  # between the starts of two requests to one host
    retries: int = 5  # further attempts after the first, per file
    backoff_s: float = 2.0  # first retry delay, doubled at each retry
    backoff_max_s: float = 120.0
    timeout_s: float = 60.0  # socket timeout per request
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one item: ``status`` is downloaded, resumed, skipped or failed."""

    item: DownloadItem
    status: str
    path: Path | None = None
    sha256: str | None = None
    attempts: int = 0
    error: str | None = None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _already_done(item: DownloadItem, path: Path) -> str | None:
    """The file's sha256 when it is on disk and matches what is expected, else None."""
    if not path.is_file():
        return None
    expected = item.sha256
    if expected is None and _sidecar(path).is_file():
        expected = _sidecar(path).read_text().strip()
    if expected is None:
        return None  # no way to tell a complete file from a foreign one: fetch again
    actual = sha256_file(path)
    return actual if actual == expected.lower() else None


def _fetch(item: DownloadItem, part: Path, config: DownloadConfig) -> bool:
    """One request for the rest of ``part``; returns True when it resumed (206)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(item.url, headers={"User-Agent": config.user_agent})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=config.timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part is not a prefix the server knows: start over
            part.unlink()
        raise
    with response:
        resumed = response.status == 206 and have > 0
        with part.open("ab" if resumed else "wb") as fh:
            shutil.copyfileobj(response, fh, _CHUNK)
            fh.flush()
            os.fsync(fh.fileno())
        expected = response.headers.get("Content-Length")
        got = part.stat().st_size - (have if resumed else 0)
        if expected is not None and got < int(expected):
            raise http.client.IncompleteRead(b"", int(expected) - got)
    return resumed


def _retry_delay(err: Exception, attempt: int, config: DownloadConfig) -> float | None:
    """Seconds to wait before the next attempt, or None when retrying cannot help."""
    if isinstance(err, urllib.error.HTTPError):
        if err.code not in _RETRY_STATUS:
            return None
        after = err.headers.get("Retry-After") if err.headers else None
        if after is not None and after.strip().isdigit():
            return min(float(after), config.backoff_max_s)
    return min(config.backoff_s * 2**attempt, config.backoff_max_s)


def _download_one(
    item: DownloadItem, out: Path, config: DownloadConfig, pace: Callable, sleep: Callable
) -> DownloadResult:
    """Fetch one item into ``out / item.file_name``, resuming and verifying it."""
    path = out / item.file_name
    done = _already_done(item, path)
    if done is not None:
        return DownloadResult(item, "skipped", path, done)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    resumed, attempt = part.exists(), 0
    while True:
        pace(item.url)
        try:
            resumed = _fetch(item, part, config) or resumed
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            delay = _retry_delay(err, attempt, config)
            if delay is None or attempt >= config.retries:
                hint = "" if delay is None else f" after {attempt + 1} attempts"
                return DownloadResult(item, "failed", attempts=attempt + 1, error=f"{err}{hint}")
            sleep(delay)
            attempt += 1
    digest = sha256_file(part)
    if item.sha256 is not None and digest != item.sha256.lower():
        part.unlink()  # corrupt bytes must not be resumed from next time
        error = f"sha256 mismatch: expected {item.sha256}, got {digest}; changed on the server?"
        return DownloadResult(item, "failed", attempts=attempt + 1, error=error)
    os.replace(part, path)  # the resumable part is complete and checked: it becomes the file
    write_text_atomic(_sidecar(path), digest + "\n")
    status = "resumed" if resumed else "downloaded"
    return DownloadResult(item, status, path, digest, attempts=attempt + 1)


def download_all(
    items: Iterable[DownloadItem],
    out: str | Path,
    config: DownloadConfig | None = None,
    *,
    manifest: str | Path | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DownloadResult]:
    """Download every item (unique ids; sequentially, paced per host) into ``out``, write the
    ``apex embed`` manifest (default ``out / "manifest.jsonl"``); a :class:`DownloadResult` per
    item, in order. ``clock`` and ``sleep`` are for tests."""
    out, config = Path(out), config or DownloadConfig()
    items = list(items)
    repeated = [i for i, n in collections.Counter(item.id for item in items).items() if n > 1]
    if repeated:
        raise DownloadError(f"id {repeated[0]!r} appears twice in the listing; ids must be unique")
    last: dict[str, float] = {}  # host -> when its last request started

    def pace(url: str) -> None:
        host = urlparse(url).netloc
        if host in last and (delay := last[host] + config.min_interval_s - clock()) > 0:
            sleep(delay)
        last[host] = clock()

    results = [_download_one(item, out, config, pace, sleep) for item in items]
    write_manifest(results, Path(manifest) if manifest else out / "manifest.jsonl")
    return results


def write_manifest(results: Iterable[DownloadResult], path: Path) -> Path:
    """Write the ``apex embed`` manifest of files on disk (``id``, ``audio`` relative to it,
    ``sha256``, the listing's other columns) and ``download_errors.jsonl`` beside it."""
    rows, errors = [], []
    for r in results:
        if r.path is None:
            errors.append({"id": r.item.id, "url": r.item.url, "error": r.error})
            continue
        audio = os.path.relpath(r.path, path.parent)
        rows.append({**r.item.meta, "id": r.item.id, "audio": audio, "sha256": r.sha256})
    write_jsonl(path.with_name("download_errors.jsonl"), errors)
    return write_jsonl(path, rows)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write one JSON object a line, atomically (a reader sees the old file or the new one)."""
    return write_text_atomic(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))

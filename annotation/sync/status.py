"""Where the Hub sync stands: its status record, backoff, and the incident a failed attempt
opens (one kind of ``_MESSAGES``, logged once with what to do, never a secret).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
)

from annotation.card import utc_minute

log = logging.getLogger(__name__)  # under "annotation.sync", which ``apex votes`` quiets

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
    """Waits between failed attempts, seconds: ``initial_s * factor**(failures-1)``, capped at
    ``max_s`` (a Retry-After from the Hub may ask for longer)."""

    initial_s: float = 30.0
    factor: float = 2.0
    max_s: float = 3600.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures."""
        base = min(self.max_s, self.initial_s * self.factor ** max(failures - 1, 0))
        return max(base, retry_after or 0.0)


@dataclass(frozen=True)
class SyncStatus:
    """Where the sync stands, for the Data tab and ``apex votes status`` (times UTC, or None).
    ``state``: ``local`` (no repo configured), ``starting``, ``ok``, ``stopped``, or the open
    incident's kind; ``last_error``: its message (no secrets); ``pending_votes``: votes not on the
    Hub yet, ``pending_exported`` (in local shards) plus ``pending_unexported`` (in the store
    only); ``pending_since``: when the oldest of them was cast; ``pushed_files``: files the repo
    has received from this data directory."""

    state: str
    repo_id: str | None = None
    last_push_at: datetime | None = None
    last_error: str | None = None
    pending_votes: int = 0
    pending_exported: int = 0
    pending_unexported: int = 0
    pushed_files: int = 0
    next_retry_at: datetime | None = None
    pending_since: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when no incident is open."""
        return self.last_error is None

    @property
    def message(self) -> str:
        """One sentence for people."""
        if self.state == "local":
            return "Votes are kept locally (set APEX_VOTES_REPO to publish them on the Hub)."
        when = utc_minute(self.last_push_at) if self.last_push_at else "never"
        waiting = "every vote is on the Hub"
        if self.pending_votes:
            since = (
                f", the oldest from {utc_minute(self.pending_since)}" if self.pending_since else ""
            )
            waiting = f"{self.pending_votes} votes not on the Hub yet{since}"
        head = f"Hub sync to {self.repo_id}: last push {when}; {waiting}."
        return f"{head} Problem: {self.last_error}." if self.last_error else head

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (times as ISO 8601 strings), with ``ok`` and ``message``."""
        out = asdict(self)
        for key in ("last_push_at", "next_retry_at", "pending_since"):
            out[key] = out[key].isoformat() if out[key] else None
        return {**out, "ok": self.ok, "message": self.message}


class NoToken(RuntimeError):
    """No token is configured; raised before any request is made."""


def describe_error(
    err: BaseException, repo_id: str, secrets: tuple[str, ...] = ()
) -> tuple[str, str, float | None]:
    """Classify a Hub failure: ``(kind, message, retry_after_s)``; the message has no
    ``secrets`` nor anything shaped like a Hub token."""
    detail = f"{type(err).__name__}: {err}".splitlines()[0][:200]
    for secret in filter(None, secrets):
        detail = detail.replace(secret, "***")
    detail = _SECRET.sub("***", detail)
    code, retry_after = None, None
    response = getattr(err, "response", None) if isinstance(err, HfHubHTTPError) else None
    if response is not None:
        code = response.status_code
        try:
            retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            retry_after = None
    # httpx-family network errors share a TransportError base
    transport = any(c.__name__ == "TransportError" for c in type(err).__mro__)
    if isinstance(err, (LocalTokenNotFoundError, NoToken)):
        kind = "no_token"
    elif code is not None:
        kind = _HTTP_KINDS.get(code) or ("server_error" if code >= 500 else "http_error")
    elif transport or isinstance(err, (ConnectionError, TimeoutError, LocalEntryNotFoundError)):
        kind = "offline"
    else:
        kind = "error"
    return kind, _MESSAGES[kind].format(repo=repo_id, code=code, detail=detail), retry_after


class Incidents:
    """The sync's state, its open incident and the backoff before the next attempt (thread-safe);
    ``repo_id`` None: votes are only kept locally."""

    def __init__(self, repo_id: str | None, backoff: Backoff) -> None:
        self.repo_id, self.backoff = repo_id, backoff
        self._lock = threading.Lock()
        self._state = "local" if repo_id is None else "starting"
        self._incident: tuple[str, str] | None = None  # (kind, message) of the open incident
        self._failures = 0
        self._next_retry: datetime | None = None

    def failed(
        self, err: BaseException, doing: str, *, secrets: tuple[str, ...], retrying: bool
    ) -> float:
        """Record a failed attempt while ``doing``, logged (without ``secrets``) only when it opens
        a new incident; returns the backoff wait, seconds (``retrying``: the loop will retry)."""
        kind, message, retry_after = describe_error(err, self.repo_id or "", secrets)
        with self._lock:
            self._failures += 1
            delay = self.backoff.delay(self._failures, retry_after)
            self._next_retry = datetime.fromtimestamp(time.time() + delay, timezone.utc)
            new = self._incident is None or self._incident[0] != kind
            self._incident = (kind, message)
        if new:
            then = f"; retrying with backoff, next try in {delay:.3g} s" if retrying else ""
            log.warning(
                "Hub sync to %s: %s (while %s). Votes are kept locally%s.",
                self.repo_id,
                message,
                doing,
                then,
            )
        return delay

    def succeeded(self) -> None:
        """Close the open incident (logging the recovery) and reset the backoff."""
        with self._lock:
            if self._incident is not None:
                log.info(
                    "Hub sync to %s recovered after %d failed attempts.",
                    self.repo_id,
                    self._failures,
                )
            self._incident, self._failures = None, 0
            self._state, self._next_retry = "ok", None

    def stopped(self) -> None:
        """The sync stopped: an open incident is no longer its state (its message stays)."""
        with self._lock:
            self._state = "stopped" if self.repo_id else "local"

    def status(self, **facts: Any) -> SyncStatus:
        """The :class:`SyncStatus` of this state with ``facts``: its other fields but
        ``pending_votes``, the sum of ``pending_exported`` and ``pending_unexported``."""
        with self._lock:
            open_incident = self._incident is not None and self._state != "stopped"
            return SyncStatus(
                state=self._incident[0] if open_incident else self._state,
                repo_id=self.repo_id,
                last_error=self._incident[1] if self._incident else None,
                pending_votes=facts["pending_exported"] + facts["pending_unexported"],
                next_retry_at=self._next_retry if self._incident else None,
                **facts,
            )

"""Hub sync of the vote store: :class:`VoteSync` and one push round (``service``), the files and
their ledger (``files``), incidents and backoff (``status``), monthly compaction (``compact``)."""

from __future__ import annotations

from annotation.sync.files import restore_from_folder
from annotation.sync.service import SYNC_ERRORS, SystemClock, VoteSync
from annotation.sync.status import Backoff, SyncStatus, describe_error

__all__ = [
    "SYNC_ERRORS",
    "Backoff",
    "SyncStatus",
    "SystemClock",
    "VoteSync",
    "describe_error",
    "restore_from_folder",
]

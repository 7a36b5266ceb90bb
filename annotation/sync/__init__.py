"""Hub sync of the vote store: publish append-only shards to a dataset repo, restore from it.

- :mod:`annotation.sync.service` -- :class:`VoteSync` (start, push, stop, status, restore): one
  thread that waits for the interval (or the backoff) and pushes;
- :mod:`annotation.sync.push` -- one round's files: export, the card, what the repo lacks, commit;
- :mod:`annotation.sync.files` -- the ledger of what the repo holds, adopting and importing shards;
- :mod:`annotation.sync.status` -- incidents, backoff and the status the Data tab shows.
"""

from __future__ import annotations

from annotation.sync.files import UPLOAD_PATTERNS, restore_from_folder
from annotation.sync.service import SYNC_ERRORS, SystemClock, VoteSync
from annotation.sync.status import Backoff, SyncStatus, describe_error, redact

__all__ = [
    "SYNC_ERRORS",
    "UPLOAD_PATTERNS",
    "Backoff",
    "SyncStatus",
    "SystemClock",
    "VoteSync",
    "describe_error",
    "redact",
    "restore_from_folder",
]

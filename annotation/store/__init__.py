"""The vote store: battles, listen events and votes, durable once acknowledged.

Callers use :class:`VoteStore`'s methods with plain records (:class:`Battle`, :class:`VoteRecord`,
:class:`~annotation.rules.ListenEvent`) and DataFrames, never SQL. :func:`open_store` picks the
backend from the settings: SQLite in WAL mode by default (:mod:`annotation.store.sqlite`, which
states its durability and concurrency guarantees), or PostgreSQL for several app replicas sharing
one store (:mod:`annotation.store.pg`). Both run the same queries (:mod:`annotation.store.sql`)
on the same records, errors and schema version (:mod:`annotation.store.records`), all importable
from here.
"""

from __future__ import annotations

from annotation.store.records import (
    SCHEMA_VERSION,
    SOURCES,
    VOTE_FIELDS,
    Battle,
    DuplicateVote,
    StoreError,
    VoteRecord,
    VoteStore,
    new_vote,
)
from annotation.store.sqlite import SQLiteVoteStore
from apex.settings import Settings

__all__ = [
    "SCHEMA_VERSION",
    "SOURCES",
    "VOTE_FIELDS",
    "Battle",
    "DuplicateVote",
    "SQLiteVoteStore",
    "StoreError",
    "VoteRecord",
    "VoteStore",
    "new_vote",
    "open_store",
]


def open_store(settings: Settings) -> VoteStore:
    """Open (creating and migrating when needed) the vote store the settings point at.

    ``APEX_DATABASE_URL`` unset or ``sqlite:///PATH`` gives SQLite; ``postgresql://...`` gives the
    PostgreSQL store (:mod:`annotation.store.pg`), for several app replicas sharing one store.

    Raises:
        StoreError: ``APEX_DATABASE_URL`` names a backend this version does not have.
    """
    url = settings.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        from annotation.store.pg import open_pg_store

        return open_pg_store(url)
    if url and not url.startswith("sqlite:"):
        raise StoreError(
            f"APEX_DATABASE_URL={url.split(':', 1)[0]}:... is not a supported backend; use "
            "postgresql://... or sqlite:///PATH, or unset it for SQLite in the data directory."
        )
    path = url.removeprefix("sqlite:///") if url else settings.store_path
    return SQLiteVoteStore(path)

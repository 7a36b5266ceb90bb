"""The vote store: battles, listen events and votes, durable once acknowledged.

:func:`open_store` picks SQLite (default, :mod:`annotation.store.sqlite`) or PostgreSQL
(:mod:`annotation.store.pg`); both share :mod:`annotation.store.sql` and
:mod:`annotation.store.records`.
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
        from annotation.store.pg import PostgresVoteStore

        return PostgresVoteStore(url)
    if url and not url.startswith("sqlite:"):
        raise StoreError(
            f"APEX_DATABASE_URL={url.split(':', 1)[0]}:... is not a supported backend; use "
            "postgresql://... or sqlite:///PATH, or unset it for SQLite in the data directory."
        )
    path = url.removeprefix("sqlite:///") if url else settings.store_path
    return SQLiteVoteStore(path)

"""The vote store: battles, listen events and votes, durable once acknowledged, on SQLite
(default) or PostgreSQL (:func:`open_store`)."""

from __future__ import annotations

from annotation.store.records import (
    SCHEMA_VERSION,
    SOURCES,
    VOTE_FIELDS,
    Battle,
    DuplicateVote,
    StoreClosed,
    StoreError,
    VoteRecord,
    new_vote,
)
from annotation.store.sql import SQLVoteStore as VoteStore  # what any backend offers
from annotation.store.sqlite import SQLiteVoteStore
from apex.settings import Settings

__all__ = [
    "SCHEMA_VERSION",
    "SOURCES",
    "VOTE_FIELDS",
    "Battle",
    "DuplicateVote",
    "SQLiteVoteStore",
    "StoreClosed",
    "StoreError",
    "VoteRecord",
    "VoteStore",
    "new_vote",
    "open_store",
]


def open_store(settings: Settings) -> VoteStore:
    """Open (creating and migrating when needed) the store ``APEX_DATABASE_URL`` names: unset or
    ``sqlite:///PATH``: SQLite; ``postgresql://...``: PostgreSQL (replicas sharing one store).
    StoreError for any other backend."""
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

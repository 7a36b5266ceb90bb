"""The human side of APEX Arena: clip pool, battles, vote rules, vote store, ratings, Hub sync.

Where things live (``apex`` is the model side; nothing here imports gradio):

- ``annotation/pool/`` -- the clip pool: :func:`load_pool`, :class:`ClipPool` (``clip_pool``),
  header checks (``check``), where clips come from (``sources``), background scoring (``scoring``);
- ``annotation/store/`` -- the vote store: :func:`open_store`, records and errors
  (``records``), the shared SQL (``sql``), the tables (``schema``), SQLite and PostgreSQL;
- ``annotation/sync/`` -- Hub sync of the store: :class:`VoteSync` (``service``: one push
  thread), one push round (``push``), the ledger (``files``), incidents (``status``);
- the arena, one module per concern: ``arena`` (:class:`Arena`: issue, listen, vote),
  ``rules`` (every vote rule, :func:`listen_status`), ``reveal`` (what a voter sees after the
  vote), ``sampler`` (which pair next), ``limits`` (rate limiters), ``identity`` (pseudonyms),
  ``loudness`` (loudness-matched playback), ``flags`` (vote-quality flags);
- the boards: ``board`` (:func:`select_votes`, the leaderboard service, the consensus board),
  ``ratings`` (Bradley-Terry, Elo), ``style`` (style-controlled ratings), ``agreement`` (APEX
  vs listeners);
- data in and out: ``export`` (Parquet shards), ``card`` (the dataset card), ``imports`` (Music
  Arena's votes), ``voter_sim`` (simulated voters);
- refits: ``refit_job`` (one refit from the store), ``refit_worker`` (the app's background
  refits); ``cli`` (``apex votes``); ``hub`` (what a Hub call raises when it cannot answer).

The main names are importable from here; each is loaded on first use, so ``import annotation``
costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Arena": "annotation.arena",
    "BattleTicket": "annotation.arena",
    "Reveal": "annotation.reveal",
    "VoteRefused": "annotation.rules",
    "ListenStatus": "annotation.rules",
    "listen_status": "annotation.rules",
    "ClipPool": "annotation.pool",
    "load_pool": "annotation.pool",
    "PoolError": "annotation.pool",
    "VoteStore": "annotation.store",
    "VoteRecord": "annotation.store",
    "StoreError": "annotation.store",
    "open_store": "annotation.store",
    "VoteSync": "annotation.sync",
    "start_sync": "annotation.sync",
    "board_data": "annotation.board",
    "fit_bradley_terry": "annotation.ratings",
    "fit_style_controlled": "annotation.style",
    "select_votes": "annotation.board",
    "export_shards": "annotation.export",
    "run_refit_from_store": "annotation.refit_job",
    "RefitWorker": "annotation.refit_worker",
}

__all__ = [
    "Arena",
    "BattleTicket",
    "ClipPool",
    "ListenStatus",
    "PoolError",
    "RefitWorker",
    "Reveal",
    "StoreError",
    "VoteRecord",
    "VoteRefused",
    "VoteStore",
    "VoteSync",
    "board_data",
    "export_shards",
    "fit_bradley_terry",
    "fit_style_controlled",
    "listen_status",
    "load_pool",
    "open_store",
    "run_refit_from_store",
    "select_votes",
    "start_sync",
]

if TYPE_CHECKING:
    from annotation.arena import Arena, BattleTicket
    from annotation.board import board_data, select_votes
    from annotation.export import export_shards
    from annotation.pool import ClipPool, PoolError, load_pool
    from annotation.ratings import fit_bradley_terry
    from annotation.refit_job import run_refit_from_store
    from annotation.refit_worker import RefitWorker
    from annotation.reveal import Reveal
    from annotation.rules import ListenStatus, VoteRefused, listen_status
    from annotation.store import StoreError, VoteRecord, VoteStore, open_store
    from annotation.style import fit_style_controlled
    from annotation.sync import VoteSync, start_sync


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'annotation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

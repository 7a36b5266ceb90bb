"""Corpus-scale embedding extraction: ``apex embed MANIFEST --out DIR``.

``run_embed(EmbedConfig(manifest, out))`` reads a manifest (:mod:`apex.embed.manifest`), embeds
every song not yet finished in ``out`` and writes atomic Parquet shards (:mod:`apex.embed.shards`)
that :func:`apex.training.data.read_shards` reads as they are (``out / "embeddings"``). Songs
that cannot be embedded are listed with their reason in ``out / "errors"``; the job goes on.
``engine="ray"`` runs the same steps on Ray Data (:mod:`apex.embed.ray_engine`, optional extra
``.[ray]``).
"""

from __future__ import annotations

from apex.embed.config import ENGINES, EmbedConfig
from apex.embed.job import EmbedSummary, run_embed
from apex.embed.manifest import ManifestError, read_manifest
from apex.embed.shards import (
    EMBEDDINGS_DIR,
    ERRORS_DIR,
    EmbedError,
    finished_ids,
    read_errors,
)

__all__ = [
    "EMBEDDINGS_DIR",
    "ENGINES",
    "ERRORS_DIR",
    "EmbedConfig",
    "EmbedError",
    "EmbedSummary",
    "ManifestError",
    "finished_ids",
    "read_errors",
    "read_manifest",
    "run_embed",
]

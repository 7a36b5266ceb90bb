"""Corpus-scale embedding extraction, ``apex embed MANIFEST --out DIR``: :func:`run_embed`
writes the shards :func:`apex.training.data.read_shards` reads, and ``out/errors``."""

from __future__ import annotations

from apex.embed.job import ENGINES, EmbedConfig, run_embed
from apex.embed.manifest import ManifestError, read_manifest
from apex.embed.shards import EmbedError, finished_ids, read_errors

__all__ = [
    "ENGINES",
    "EmbedConfig",
    "EmbedError",
    "ManifestError",
    "finished_ids",
    "read_errors",
    "read_manifest",
    "run_embed",
]

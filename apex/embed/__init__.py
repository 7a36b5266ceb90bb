"""Corpus-scale embedding extraction: ``apex embed MANIFEST --out DIR``.

``run_embed(EmbedConfig(manifest, out))`` embeds every manifest song (:mod:`apex.embed.manifest`)
not yet finished in ``out`` into atomic Parquet shards (:mod:`apex.embed.shards`) that
:func:`apex.training.data.read_shards` reads as they are; songs that cannot be embedded are
listed with their reason in ``out / "errors"``. ``engine="ray"`` runs on Ray Data (``.[ray]``).
"""

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

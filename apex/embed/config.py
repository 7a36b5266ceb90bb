"""What ``apex embed`` takes (:class:`EmbedConfig`) and what both engines build from it.

The local engine (:mod:`apex.embed.job`) and the Ray engine (:mod:`apex.embed.ray_engine`) both
load their encoder with :func:`build_encoder` and count songs with :func:`progress_bar`, so
neither engine imports the other.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EmbedConfig:
    """Everything ``apex embed`` takes (the CLI flags mirror these fields).

    Attributes:
        manifest: JSONL/CSV manifest file or Hub dataset id (see :mod:`apex.embed.manifest`).
        out: Output folder (see :mod:`apex.embed.shards`).
        encoder: ``"fallback"``, a local HuBERT/MERT directory, or a Hub id.
        precision: ``"fast"`` or ``"reference"`` (MERT).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (local engine).
        workers: Decoding processes (local engine); 0 decodes in the main process.
        batch_size: Clips per encoder call (and MERT segments per forward pass).
        shard_size: Songs per embeddings shard (the resumption granularity).
        engine: ``"local"`` or ``"ray"``.
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``); None starts a local
            Ray with ``num_cpus`` CPUs.
        num_cpus: CPUs of a local Ray started by the job (None: all).
        max_seconds: Longest accepted song, seconds (longer ones go to the errors shard).
        trust_remote_code: Let a MERT checkpoint run its own modelling code (explicit opt-in).
        progress: Show a tqdm progress bar (rate and ETA) on stderr.
    """

    manifest: str
    out: Path
    encoder: str = "fallback"
    precision: str = "fast"
    device: str = "auto"
    workers: int = field(default_factory=lambda: max(1, min(8, (os.cpu_count() or 2) - 1)))
    batch_size: int = 8
    shard_size: int = 256
    engine: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    max_seconds: float = 600.0
    trust_remote_code: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        for name in ("batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


def build_encoder(config: EmbedConfig) -> Any:
    """The encoder the config names (weights loaded once, in the calling process)."""
    from apex.encoders import load_encoder

    return load_encoder(
        config.encoder,
        precision=config.precision,
        device=config.device,
        trust_remote_code=config.trust_remote_code,
        batch_size=config.batch_size,
    )


def progress_bar(config: EmbedConfig, total: int) -> Any:
    """A tqdm bar over songs: rate (songs/s) and ETA are part of tqdm's default format."""
    from tqdm import tqdm

    return tqdm(
        total=total, unit="song", desc="embed", disable=not config.progress, file=sys.stderr
    )

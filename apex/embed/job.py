"""The embedding job: manifest in, resumable Parquet shards out, on the local or the Ray engine.

Local engine: a process pool decodes (and fetches) audio ahead of the encoder
(:mod:`apex.embed.decoding`), which runs in the main process on batches of ``batch_size`` clips,
so decoding on the CPU cores overlaps encoding on the accelerator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apex.embed.config import EmbedConfig, build_encoder, progress_bar
from apex.embed.decoding import decoded_items
from apex.embed.manifest import read_manifest
from apex.embed.records import encode_items, records_table
from apex.embed.shards import ShardWriter, finished_ids


@dataclass(frozen=True)
class EmbedSummary:
    """What a run did. Rates count only this run's songs (skipped ones are free).

    Attributes:
        total: songs in the manifest; skipped: already finished before this run;
        embedded / failed: this run's outcomes; seconds: wall time of the encoding phase;
        audio_seconds: seconds of audio embedded by this run.
    """

    total: int
    skipped: int
    embedded: int
    failed: int
    seconds: float
    audio_seconds: float
    out: Path

    @property
    def songs_per_s(self) -> float:
        """Songs (embedded or failed) per wall-clock second."""
        return (self.embedded + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def audio_x_realtime(self) -> float:
        """Seconds of audio embedded per wall-clock second."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def run_embed(config: EmbedConfig) -> EmbedSummary:
    """Embed every song of the manifest not yet finished in ``config.out``.

    Raises:
        ManifestError: the manifest is unusable.
        EmbedError: the folder holds another encoder's embeddings; Ray is missing.
        EncoderUnavailable: the encoder's weights cannot be had.
    """
    items = read_manifest(config.manifest)
    done = finished_ids(config.out)
    pending = [item for item in items if item["id"] not in done]
    writer = ShardWriter(config.out, config.shard_size)
    started = time.perf_counter()
    if config.engine == "ray":
        from apex.embed.ray_engine import run_ray

        audio_seconds = run_ray(config, pending, writer)
    else:
        audio_seconds = _run_local(config, pending, writer)
    writer.flush()
    return EmbedSummary(
        total=len(items),
        skipped=len(items) - len(pending),
        embedded=writer.written["ok"],
        failed=writer.written["error"],
        seconds=time.perf_counter() - started,
        audio_seconds=audio_seconds,
        out=Path(config.out),
    )


def _run_local(config: EmbedConfig, pending: list[dict[str, Any]], writer: ShardWriter) -> float:
    if not pending:
        return 0.0
    encoder = build_encoder(config)
    audio_seconds = 0.0
    with progress_bar(config, len(pending)) as bar:
        batch: list[dict[str, Any]] = []
        ahead = 4 * max(1, config.workers) * config.batch_size
        decoded_stream = decoded_items(
            pending, encoder.sample_rate, config.max_seconds, config.workers, ahead
        )
        for decoded in decoded_stream:
            batch.append(decoded)
            if len(batch) == config.batch_size:
                audio_seconds += _encode(encoder, batch, writer, bar)
                batch = []
        if batch:
            audio_seconds += _encode(encoder, batch, writer, bar)
    return audio_seconds


def _encode(encoder: Any, batch: list[dict[str, Any]], writer: ShardWriter, bar: Any) -> float:
    records = encode_items(encoder, batch)
    writer.add(records_table(records))
    bar.update(len(batch))
    return sum(r["duration_s"] for r in records if r["status"] == "ok")


__all__ = ["EmbedSummary", "run_embed"]

"""The embedding job: manifest in, resumable Parquet shards out, on the local or Ray engine.

Local engine: ``spawn`` workers decode ahead of the main process's encoder (callers need the
``__main__`` guard); a file that kills its worker again, retried alone, becomes an error record."""

from __future__ import annotations

import collections
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from apex.embed.manifest import read_manifest
from apex.embed.records import decode_item, encode_items, records_table
from apex.embed.shards import ShardWriter, finished_ids
from apex.lifeline import exit_with_parent

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EmbedConfig:
    """Everything ``apex embed`` takes (the CLI flags mirror these fields)."""

    manifest: str  # JSONL/CSV file or Hub dataset id (apex.embed.manifest)
    out: Path  # output folder (apex.embed.shards)
    encoder: str = "fallback"  # "fallback", a local HuBERT/MERT directory, or a Hub id
    precision: str = "fast"  # or "reference" (MERT)
    device: str = "auto"  # "cpu", "cuda", "cuda:N" (local engine)
    # decoding processes (local engine); 0 decodes in the main process
    workers: int = field(default_factory=lambda: max(1, min(8, (os.cpu_count() or 2) - 1)))
    batch_size: int = 8  # clips per encoder call (and MERT segments per forward pass)
    shard_size: int = 256  # songs per embeddings shard (the resumption granularity)
    engine: str = "local"  # or "ray"
    address: str | None = None  # Ray cluster ("auto", "ray://host:10001"); None: a local Ray
    num_cpus: int | None = None  # CPUs of that local Ray (None: all)
    max_seconds: float = 600.0  # longest accepted song; longer ones go to the errors shard
    trust_remote_code: bool = False  # let a MERT checkpoint run its own modelling code
    progress: bool = True  # a tqdm bar (rate, ETA) on stderr

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        for name in ("batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    def load_encoder(self) -> Any:
        """The encoder this names (weights loaded once, in the calling process)."""
        from apex.encoders import load_encoder

        return load_encoder(
            self.encoder,
            precision=self.precision,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
            batch_size=self.batch_size,
        )

    def progress_bar(self, total: int) -> Any:
        """A tqdm bar over songs on stderr (its default format shows songs/s and the ETA)."""
        from tqdm import tqdm

        return tqdm(
            total=total, unit="song", desc="embed", disable=not self.progress, file=sys.stderr
        )


@dataclass(frozen=True)
class EmbedSummary:
    """What a run did; rates count only this run's songs (skipped ones are free)."""

    total: int  # songs in the manifest
    skipped: int  # already finished before this run
    embedded: int
    failed: int
    seconds: float  # wall time of the encoding phase
    audio_seconds: float  # of audio embedded by this run
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
    """Embed every song of the manifest not yet finished in ``config.out``. Raises
    :class:`ManifestError` (unusable manifest), :class:`EmbedError` (the folder holds another
    encoder's embeddings; Ray is missing), ``EncoderUnavailable`` (no weights)."""
    items = read_manifest(config.manifest)
    done = finished_ids(config.out)
    pending = [item for item in items if item["id"] not in done]
    writer = ShardWriter(config.out, config.shard_size)
    started = time.perf_counter()
    if config.engine == "ray":
        from apex.embed.ray_engine import run_ray

        run_ray(config, pending, writer)
    else:
        _run_local(config, pending, writer)
    writer.flush()
    return EmbedSummary(
        total=len(items),
        skipped=len(items) - len(pending),
        embedded=writer.written["ok"],
        failed=writer.written["error"],
        seconds=time.perf_counter() - started,
        audio_seconds=writer.audio_seconds,
        out=Path(config.out),
    )


def _run_local(config: EmbedConfig, pending: list[dict[str, Any]], writer: ShardWriter) -> None:
    if not pending:
        return
    encoder = config.load_encoder()
    ahead = 4 * max(1, config.workers) * config.batch_size
    stream = decoded_items(pending, encoder.sample_rate, config.max_seconds, config.workers, ahead)
    with config.progress_bar(len(pending)) as bar:
        while batch := list(itertools.islice(stream, config.batch_size)):
            writer.add(records_table(encode_items(encoder, batch)))
            bar.update(len(batch))


_CRASH_REASON = (
    "the decoding process died on this file (a decoder crash, or out of memory); check or "
    "re-encode the file (e.g. `ffmpeg -i in -ar 24000 out.wav`)"
)


def decoded_items(
    pending: list[dict[str, Any]],
    sample_rate: int,
    max_seconds: float,
    workers: int,
    ahead: int,
    decode: Callable[[dict[str, Any], int, float], dict[str, Any]] = decode_item,
) -> Iterator[dict[str, Any]]:
    """Yield ``decode(item, sample_rate Hz, max_seconds)`` of every pending item, in order, on
    ``workers`` processes (0: here), ``ahead`` items submitted ahead of the one consumed;
    ``decode``: a module-level function (pickled to workers)."""
    if workers == 0:
        for item in pending:
            yield decode(item, sample_rate, max_seconds)
        return
    todo = collections.deque(pending)
    queue: collections.deque[tuple[dict[str, Any], Future]] = collections.deque()
    pool = _new_pool(workers)
    try:
        while todo or queue:
            while todo and len(queue) < ahead:
                item = todo.popleft()
                queue.append((item, pool.submit(decode, item, sample_rate, max_seconds)))
            item, future = queue.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                pool.shutdown(wait=True, cancel_futures=True)
                pool = _new_pool(workers)
                try:  # alone in a fresh pool: a crash now proves the file is the cause
                    result = pool.submit(decode, item, sample_rate, max_seconds).result()
                except BrokenProcessPool:
                    result = {**item, "stage": "decode", "reason": _CRASH_REASON}
                    pool.shutdown(wait=True)  # the culprit broke this pool too
                    pool = _new_pool(workers)
                # Everything else in flight died with the pool: decode it again.
                todo.extendleft(reversed([queued for queued, _ in queue]))
                queue.clear()
            yield result
    finally:  # also when the consumer stops early: do not decode the read-ahead for nothing
        pool.shutdown(wait=False, cancel_futures=True)


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def _init_worker(parent_pid: int) -> None:
    """Exit with the job (a killed job runs nothing to shut the pool down, and each worker
    holds hundreds of MB); one torch thread, as processes are the parallelism."""
    exit_with_parent(parent_pid)
    import torch

    torch.set_num_threads(1)

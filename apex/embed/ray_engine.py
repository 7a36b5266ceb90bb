"""The Ray Data engine of ``apex embed`` (extra ``.[ray]``): decode on CPU tasks, encode on one
actor per GPU (one CPU actor without GPUs), write shards on the driver (audio must be readable
from every node; no shared file system needed); the same :mod:`apex.embed.records` as local."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from apex.embed.records import decode_item, encode_items, records_table
from apex.embed.shards import EmbedError, ShardWriter

if TYPE_CHECKING:
    from apex.embed.job import EmbedConfig

_DECODE_MEMORY = 512 * 1024**2  # bytes reserved per decoding task
#: Keys every decoded row carries, so that all rows of a Ray block share one schema.
_DECODED_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(("pcm", "duration_s", "stage", "reason")),
    "sample_rate": 0,
    "warnings": "[]",
}


def run_ray(config: EmbedConfig, pending: list[dict[str, Any]], writer: ShardWriter) -> None:
    """Embed ``pending`` on Ray Data into ``writer``, on ``config.address``, the running Ray (a
    test's ``ray.init``) or a local one of ``config.num_cpus`` CPUs (shut down at the end)."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise EmbedError(
            "--engine ray needs Ray Data: `pip install -e '.[ray]'` (or `pip install "
            "'ray[data]>=2.40'`), or use --engine local."
        ) from err
    if not pending:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=config.address,
            num_cpus=None if config.address else config.num_cpus,
            include_dashboard=False,
        )
    try:
        _run(ray, config, pending, writer)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray: Any, config: EmbedConfig, pending: list[dict[str, Any]], writer: ShardWriter) -> None:
    from apex.audio import SAMPLE_RATE

    gpus = int(ray.cluster_resources().get("GPU", 0))
    # Our own tqdm bar counts songs; Ray's per-operator bars would interleave with it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    actor_config = dataclasses.replace(config, device="cuda" if gpus else "cpu")
    dataset = (
        ray.data.from_items(pending)
        .map(
            _decode_row,
            fn_kwargs={"sample_rate": SAMPLE_RATE, "max_seconds": config.max_seconds},
            num_cpus=1,
            # A 10-min 48 kHz stereo clip decodes to ~230 MB of float32, plus its resampled copy.
            # Reserving memory also keeps Ray from fusing decoding into the encoder's actor (the
            # remote args differ), which would serialise it behind the encoder on CPU clusters.
            memory=_DECODE_MEMORY,
        )
        .map_batches(
            _EncodeActor,
            fn_constructor_kwargs={"config": actor_config},
            batch_size=config.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=max(1, gpus)),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
        )
    )
    with config.progress_bar(len(pending)) as bar:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            writer.add(batch)
            bar.update(batch.num_rows)


def _decode_row(row: dict[str, Any], sample_rate: int, max_seconds: float) -> dict[str, Any]:
    """Ray task: decode one manifest row (see :func:`apex.embed.records.decode_item`)."""
    import torch

    torch.set_num_threads(1)  # one CPU per task, as scheduled
    return {**_DECODED_DEFAULTS, **decode_item(row, sample_rate, max_seconds)}


class _EncodeActor:
    """Ray actor: holds one encoder (on its GPU when it has one) and encodes batches of rows."""

    def __init__(self, config: EmbedConfig) -> None:
        self.encoder = config.load_encoder()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return records_table(encode_items(self.encoder, batch.to_pylist()))

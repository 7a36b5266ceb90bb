"""The two steps of the job, shared by every engine: decode one item, encode decoded items.

Both return plain dicts so that they travel unchanged through a process pool or Ray Data:

* :func:`decode_item` (CPU, in a worker): the manifest item plus ``pcm`` (the mono float32
  waveform at the encoder's rate, as bytes: a fixed binary type is cheaper to move through Ray's
  object store than a ragged tensor column), ``sample_rate`` and ``duration_s`` — or, when the
  audio cannot be had, ``stage`` and ``reason``.
* :func:`encode_items` (in the process that holds the encoder): one *record* per item with every
  column of :data:`RECORD_SCHEMA`; ``status`` is ``"ok"`` or ``"error"``.

The shard writer splits records into the embeddings and the errors shards.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from apex.embed.manifest import TARGET_COLUMNS

if TYPE_CHECKING:
    from apex.encoders import Embedding, Encoder

FETCH_TIMEOUT_S = 60.0

_F32_LIST = pa.list_(pa.float32())
_I32_LIST = pa.list_(pa.int32())
#: Columns of the embeddings shards (``apex.training.data.read_shards`` reads them as they are).
EMBEDDING_FIELDS: tuple[pa.Field, ...] = (
    pa.field("id", pa.string()),
    pa.field("embedding", _F32_LIST),  # [L, D] song level, flattened (masked segment mean)
    pa.field("shape", _I32_LIST),  # [L, D]
    pa.field("embedding_padded", _F32_LIST),  # [L, D] the reference's pooling, segment mean
    pa.field("segments", _F32_LIST),  # [S, L, D] per segment (Embedding.layers), flattened
    pa.field("segments_shape", _I32_LIST),  # [S, L, D]
    pa.field("segment_seconds", _F32_LIST),  # [S] seconds of real audio per segment
    pa.field("duration_s", pa.float64()),
    pa.field("encoder_id", pa.string()),
    pa.field("settings_key", pa.string()),
    pa.field("status", pa.string()),
    pa.field("warnings", pa.string()),  # JSON list of notes (e.g. silence)
    pa.field("platform", pa.string()),
    pa.field("split", pa.string()),
    *(pa.field(name, pa.float64()) for name in TARGET_COLUMNS),
    pa.field("extra", pa.string()),  # JSON object of the other manifest columns
)
#: Columns of the errors shards.
ERROR_FIELDS: tuple[pa.Field, ...] = (
    pa.field("id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("stage", pa.string()),  # manifest | fetch | decode | encode
    pa.field("reason", pa.string()),
    pa.field("encoder_id", pa.string()),
    pa.field("settings_key", pa.string()),
    pa.field("time", pa.float64()),  # Unix seconds
)
RECORD_SCHEMA = pa.schema(
    list(EMBEDDING_FIELDS)
    + [f for f in ERROR_FIELDS if f.name not in {"id", "encoder_id", "settings_key"}]
)

#: What encoding one clip may raise that is the clip's fault or the device's, not a bug: bad
#: audio (``AudioError`` is a ValueError), torch's runtime errors (out of memory, a clip too short
#: for the model). A TypeError, KeyError or AttributeError is a bug and ends the job.
ENCODE_ERRORS: tuple[type[BaseException], ...] = (ValueError, RuntimeError)


def decode_item(item: dict[str, Any], sample_rate: int, max_seconds: float) -> dict[str, Any]:
    """Fetch (URLs) and decode one manifest item; never raises for bad audio.

    Returns:
        ``item`` plus ``pcm`` (bytes of ``[T]`` float32), ``sample_rate`` (Hz), ``duration_s``,
        ``warnings`` (JSON list) on success; plus ``stage`` and ``reason`` on failure.
    """
    from apex.audio import AudioError, load_audio

    source = item["source"]
    out = dict(item)
    if not source:
        return {**out, "stage": "manifest", "reason": "the manifest row names no audio path or URL"}
    try:
        data: str | bytes = _fetch(source) if "://" in source else source
    except OSError as err:
        return {**out, "stage": "fetch", "reason": _fetch_reason(source, err)}
    try:
        audio = load_audio(data, sample_rate=sample_rate, max_seconds=max_seconds)
    except AudioError as err:
        return {**out, "stage": "decode", "reason": str(err)}
    pcm = audio.waveform.numpy().astype(np.float32, copy=False).tobytes()
    out.update(
        pcm=pcm,
        sample_rate=audio.sample_rate,
        duration_s=audio.duration_s,
        warnings=json.dumps(audio.warnings),
    )
    return out


def _fetch(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise OSError(f"unsupported URL scheme in {url!r}; use http(s) or a local path")
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
        return response.read()


def _fetch_reason(url: str, err: OSError) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"{url}: HTTP {err.code} {err.reason}; check the URL."
    return (
        f"{url}: could not download ({err}). No network (offline?) or host unreachable: "
        "download the file and put its local path in the manifest."
    )


def encode_items(encoder: Encoder, decoded: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Encode the decoded items (errors pass through); one record per item, in order.

    An encoder with an ``encode_batch(audios) -> list[Embedding]`` method gets the whole batch
    at once (several clips per forward pass); otherwise clips are encoded one by one.
    """
    import torch

    from apex.audio import Audio

    ready = [d for d in decoded if "reason" not in d]
    audios = [
        Audio(
            waveform=torch.from_numpy(np.frombuffer(d["pcm"], dtype=np.float32).copy()),
            sample_rate=int(d["sample_rate"]),
            source=d["id"],
            original_sample_rate=int(d["sample_rate"]),
            original_channels=1,
        )
        for d in ready
    ]
    embeddings: dict[str, Embedding | str] = {}
    batch = getattr(encoder, "encode_batch", None)
    if batch is not None and audios:
        try:
            embeddings.update(zip([d["id"] for d in ready], batch(audios), strict=True))
        except ENCODE_ERRORS:  # one bad clip must not sink the batch: retry one by one below
            embeddings.clear()
    for d, audio in zip(ready, audios, strict=True):
        if d["id"] not in embeddings:
            try:
                embeddings[d["id"]] = encoder.encode(audio)
            except ENCODE_ERRORS as err:  # recorded per clip in the errors shard; the job goes on
                embeddings[d["id"]] = f"{type(err).__name__}: {err}"
    key = encoder.settings_key()
    records = []
    for d in decoded:
        result = embeddings.get(d["id"], d.get("reason"))
        if isinstance(result, str):
            stage = d.get("stage", "encode")
            records.append(_error_record(d, stage, result, encoder.encoder_id, key))
        else:
            records.append(_ok_record(d, result, encoder.encoder_id, key))
    return records


def _ok_record(d: dict[str, Any], emb: Embedding, encoder_id: str, key: str) -> dict[str, Any]:
    """Song-level vectors: the mean over segments that hold audio ([S, L, D] -> [L, D])."""
    segments = emb.layers.detach().float().cpu().numpy()
    padded = emb.layers_padded.detach().float().cpu().numpy()
    mask = emb.mask.cpu().numpy()
    song = segments[mask].mean(axis=0) if mask.any() else segments.mean(axis=0)
    record = {name: d.get(name) for name in ("id", "source", "platform", "split", "extra")}
    record.update({name: d.get(name) for name in TARGET_COLUMNS})
    record.update(
        embedding=song.ravel(),
        shape=list(song.shape),
        embedding_padded=padded.mean(axis=0).ravel(),
        segments=segments.ravel(),
        segments_shape=list(segments.shape),
        segment_seconds=emb.seconds.cpu().numpy().astype(np.float32),
        duration_s=float(d["duration_s"]),
        encoder_id=encoder_id,
        settings_key=key,
        status="ok",
        warnings=d.get("warnings", "[]"),
    )
    return record


def _error_record(
    d: dict[str, Any], stage: str, reason: str, encoder_id: str, key: str
) -> dict[str, Any]:
    record = {name: d.get(name) for name in ("id", "source", "platform", "split", "extra")}
    record.update({name: d.get(name) for name in TARGET_COLUMNS})
    record.update(
        encoder_id=encoder_id,
        settings_key=key,
        status="error",
        stage=stage,
        reason=reason,
        time=time.time(),
        duration_s=d.get("duration_s"),
    )
    return record


def records_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Records -> a table with :data:`RECORD_SCHEMA` (missing columns are null)."""
    columns = {
        field.name: pa.array([r.get(field.name) for r in records], field.type)
        for field in RECORD_SCHEMA
    }
    return pa.table(columns, schema=RECORD_SCHEMA)

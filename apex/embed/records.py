"""The job's two steps, shared by both engines: decode one item, encode decoded items. Both return
plain dicts; audio moves as ``pcm`` bytes (cheaper than ragged tensors through Ray's store)."""

from __future__ import annotations

import contextlib
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
    pa.field("audio", pa.string()),  # the manifest's path or URL
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

_ITEM_KEYS = ("id", "audio", "platform", "split", "extra", *TARGET_COLUMNS)


def decode_item(item: dict[str, Any], sample_rate: int, max_seconds: float) -> dict[str, Any]:
    """Fetch (URLs) and decode one manifest item, never raising for bad audio: ``item`` plus
    ``pcm`` (bytes of ``[T]`` float32), ``sample_rate`` (Hz), ``duration_s``, ``warnings`` (JSON
    list) on success; plus ``stage`` and ``reason`` on failure."""
    from apex.audio import AudioError, load_audio

    audio_ref = item["audio"]
    if not audio_ref:
        reason = "the manifest row names no audio path or URL"
        return {**item, "stage": "manifest", "reason": reason}
    try:
        data: str | bytes = _fetch(audio_ref) if "://" in audio_ref else audio_ref
    except OSError as err:
        return {**item, "stage": "fetch", "reason": str(err)}
    try:
        audio = load_audio(data, sample_rate=sample_rate, max_seconds=max_seconds)
    except AudioError as err:
        return {**item, "stage": "decode", "reason": str(err)}
    return {
        **item,
        "pcm": audio.waveform.numpy().astype(np.float32, copy=False).tobytes(),
        "sample_rate": audio.sample_rate,
        "duration_s": audio.duration_s,
        "warnings": json.dumps(audio.warnings),
    }


def _fetch(url: str) -> bytes:
    """The bytes at ``url``; the :class:`OSError` raised says what went wrong and what to do."""
    if not url.startswith(("http://", "https://")):
        raise OSError(f"{url}: unsupported URL scheme; use http(s) or a local path.")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as err:
        raise OSError(f"{url}: HTTP {err.code} {err.reason}; check the URL.") from err
    except OSError as err:
        raise OSError(
            f"{url}: could not download ({err}). No network (offline?) or host unreachable: "
            "download the file and put its local path in the manifest."
        ) from err


def encode_items(encoder: Encoder, decoded: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One :data:`RECORD_SCHEMA` record per decoded item, in order, ``status`` ``"ok"`` or
    ``"error"`` (decoding failures pass through). Encoded as one batch; if a clip fails there,
    one by one, so only that clip becomes an error record."""
    import torch

    from apex.audio import Audio, AudioError

    # The clip's fault or the device's; anything else (ValueError, TypeError...) is a bug.
    errors = (AudioError, torch.OutOfMemoryError)
    ready = [d for d in decoded if d.get("reason") is None]
    audios = [
        Audio(
            waveform=torch.from_numpy(np.frombuffer(d["pcm"], dtype=np.float32).copy()),
            sample_rate=int(d["sample_rate"]),
            name=d["id"],
            original_sample_rate=int(d["sample_rate"]),
            original_channels=1,
        )
        for d in ready
    ]
    embeddings: dict[str, Embedding | str] = {}
    with contextlib.suppress(*errors):  # a clip failed: all again one by one, below
        embeddings.update(zip([d["id"] for d in ready], encoder.encode_batch(audios), strict=True))
    for d, audio in zip(ready, audios, strict=True):
        if d["id"] not in embeddings:
            try:
                embeddings[d["id"]] = encoder.encode(audio)
            except errors as err:
                embeddings[d["id"]] = f"{type(err).__name__}: {err}"
    key = encoder.settings_key()
    records = []
    for d in decoded:
        record = {name: d.get(name) for name in _ITEM_KEYS}
        record.update(encoder_id=encoder.encoder_id, settings_key=key)
        result = embeddings.get(d["id"], d.get("reason"))
        if isinstance(result, str):
            record.update(
                status="error",
                stage=d.get("stage") or "encode",
                reason=result,
                time=time.time(),
                duration_s=d.get("duration_s"),
            )
        else:
            record.update(_vectors(result), duration_s=float(d["duration_s"]), status="ok")
            record["warnings"] = d.get("warnings", "[]")
        records.append(record)
    return records


def _vectors(emb: Embedding) -> dict[str, Any]:
    """Song-level vectors: the mean over segments that hold audio ([S, L, D] -> [L, D])."""
    segments = emb.layers.detach().float().cpu().numpy()
    padded = emb.layers_padded.detach().float().cpu().numpy()
    mask = emb.mask.cpu().numpy()
    song = segments[mask].mean(axis=0) if mask.any() else segments.mean(axis=0)
    return {
        "embedding": song.ravel(),
        "shape": list(song.shape),
        "embedding_padded": padded.mean(axis=0).ravel(),
        "segments": segments.ravel(),
        "segments_shape": list(segments.shape),
        "segment_seconds": emb.seconds.cpu().numpy().astype(np.float32),
    }


def records_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Records -> a table with :data:`RECORD_SCHEMA` (missing columns are null)."""
    return pa.Table.from_pylist(list(records), schema=RECORD_SCHEMA)

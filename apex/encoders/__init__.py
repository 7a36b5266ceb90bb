"""Encoders: audio clip -> per-segment, per-layer pooled embeddings (:class:`Embedding`).

``load_encoder("m-a-p/MERT-v1-95M")``: the published APEX encoder; ``load_encoder("fallback")``:
built-in descriptors, no weights."""

from __future__ import annotations

from pathlib import Path

from apex.encoders.base import Embedding, Encoder, EncoderUnavailable
from apex.encoders.cache import CachedEncoder, EmbeddingCache
from apex.encoders.fallback import FALLBACK_DIM, FallbackEncoder
from apex.encoders.mert import MertEncoder

__all__ = [
    "FALLBACK_DIM",
    "CachedEncoder",
    "Embedding",
    "EmbeddingCache",
    "Encoder",
    "EncoderUnavailable",
    "FallbackEncoder",
    "MertEncoder",
    "load_encoder",
]


def load_encoder(
    spec: str,
    *,
    precision: str = "fast",
    device: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    batch_size: int | None = None,
) -> Encoder:
    """Build the encoder named by ``spec``: ``"fallback"``, a local HuBERT/MERT checkpoint
    directory or a Hub id (the other arguments: :meth:`MertEncoder.from_pretrained`'s, device
    ``"auto"`` too); ``cache_dir`` wraps it in an :class:`EmbeddingCache` there.
    :class:`EncoderUnavailable`: no weights (offline with no cached copy, missing or unusable
    files); the message says what to do."""
    if spec == "fallback":
        encoder: Encoder = FallbackEncoder()
    else:
        encoder = MertEncoder.from_pretrained(
            spec,
            precision=precision,
            device=None if device in (None, "auto") else device,
            trust_remote_code=trust_remote_code,
            local_files_only=local_files_only,
            batch_size=batch_size,
        )
    if cache_dir is not None:
        encoder = CachedEncoder(encoder, EmbeddingCache(Path(cache_dir)))
    return encoder

"""Arena clips as split-``pool`` refit rows, embedded in the refit's own process.

The app's embedding cache is read first; a miss is encoded by the serving encoder (loaded once,
local files only) and cached for the app too. Rows keep the pooling the serving heads read
(zero-padded mean for the published heads), valid segments only (``[S, L, D]``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from apex.training.request import EncoderSpec, PoolClip

log = logging.getLogger(__name__)


def clip_rows(
    clips: Iterable[PoolClip], spec: EncoderSpec, *, padded: bool
) -> tuple[pd.DataFrame, int]:
    """``(rows, encoded)``: one split-``pool`` row per clip and how many were not cached.

    Raises:
        EncoderUnavailable: a clip is not cached and the encoder cannot be loaded.
        AudioError: a clip's file is not usable audio (the message names it).
    """
    from apex.audio import load_audio
    from apex.encoders.cache import EmbeddingCache

    cache = EmbeddingCache(spec.cache_dir)
    encoder = None
    rows, encoded = [], 0
    for clip in clips:
        rate = encoder.sample_rate if encoder is not None else spec.sample_rate
        audio = load_audio(clip.path, sample_rate=rate, max_seconds=spec.max_audio_s)
        key = cache.key(audio.content_hash, spec.encoder_id, spec.settings_key)
        emb = cache.get(key)
        if emb is None:
            encoder = encoder or _load_encoder(spec)
            emb = encoder.encode(audio)
            cache.put(key, emb)
            encoded += 1
        layers = emb.layers_padded if padded else emb.layers
        rows.append(
            {
                "id": clip.clip_id,
                "embedding": layers[emb.mask].numpy(),
                "duration_s": clip.duration_s,
                "encoder_id": emb.encoder_id,
                "platform": "arena",
                "split": "pool",
            }
        )
    if encoded:
        log.info("refit: embedded %d arena clips that had no cached embedding", encoded)
    return pd.DataFrame(rows), encoded


def _load_encoder(spec: EncoderSpec):
    from apex.encoders import load_encoder

    return load_encoder(
        spec.spec,
        precision=spec.precision,
        device="cpu",
        trust_remote_code=spec.trust_remote_code,
        local_files_only=True,
    )

"""apex.encoders.base: the contract every encoder keeps (``encode_batch`` is N ``encode``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apex.encoders import (
    CachedEncoder,
    EmbeddingCache,
    FallbackEncoder,
    MertEncoder,
)
from tests.apex.encoders.clips import song as _song


@pytest.mark.parametrize("kind", ["fallback", "mert", "cached-fallback", "cached-mert"])
def test_encode_batch_of_n_clips_equals_n_encodes(
    kind: str, reference_encoder: MertEncoder, tmp_path: Path
) -> None:
    """Every encoder: ``encode_batch`` of N clips of different lengths is N ``encode`` calls."""
    inner = FallbackEncoder() if kind.endswith("fallback") else reference_encoder
    encoder = CachedEncoder(inner, EmbeddingCache(tmp_path)) if kind.startswith("cached") else inner
    clips = [_song(2.0, seed=6), _song(3.0, seed=7), _song(31.0, seed=8)]
    batch = encoder.encode_batch(clips)
    singles = [inner.encode(audio) for audio in clips]  # never through the cache
    assert len(batch) == len(clips)
    for got, want in zip(batch, singles, strict=True):
        assert got.encoder_id == want.encoder_id
        assert got.layers.shape[0] == want.layers.shape[0]
        torch.testing.assert_close(got.layers, want.layers, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.mask, want.mask, rtol=0, atol=0)
    assert encoder.encode_batch([]) == []

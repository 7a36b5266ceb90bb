"""apex.encoders.cache: the on-disk embedding cache and the caching encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from apex.audio import Audio
from apex.encoders import (
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    FallbackEncoder,
    MertEncoder,
)
from tests.apex.encoders.clips import song as _song


class _Counting(Encoder):
    """Wraps an encoder and counts the calls that reach it."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.calls = inner, 0
        self.encoder_id, self.sample_rate = inner.encoder_id, inner.sample_rate
        self.num_layers, self.dim = inner.num_layers, inner.dim

    def settings_key(self) -> str:
        return self.inner.settings_key()

    def encode(self, audio: Audio):
        self.calls += 1
        return self.inner.encode(audio)


def test_cache_hit_never_calls_the_encoder(tmp_path: Path, reference_encoder: MertEncoder) -> None:
    counting = _Counting(reference_encoder)
    cached = CachedEncoder(counting, EmbeddingCache(tmp_path / "cache"))
    audio = _song(3.0, seed=2)
    first = cached.encode(audio)
    second = cached.encode(_song(3.0, seed=2))  # same content, new object
    assert counting.calls == 1 and (cached.hits, cached.misses) == (1, 1)
    for name in ("layers", "layers_padded", "seconds"):
        torch.testing.assert_close(getattr(first, name), getattr(second, name), rtol=0, atol=0)
    assert second.encoder_id == first.encoder_id
    # A fresh wrapper over the same directory (a restarted app) hits too.
    again = CachedEncoder(counting, EmbeddingCache(tmp_path / "cache"))
    again.encode(audio)
    assert counting.calls == 1 and again.hits == 1
    # Different audio misses; no temporary files are left behind.
    cached.encode(_song(3.0, seed=3))
    assert counting.calls == 2 and len(list((tmp_path / "cache").glob("*/*.safetensors"))) == 2
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_cache_key_separates_encoders_and_settings(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    keys = {
        cache.key("h", "enc", "s1"),
        cache.key("h", "enc", "s2"),
        cache.key("h", "other", "s1"),
        cache.key("g", "enc", "s1"),
    }
    assert len(keys) == 4


def test_corrupt_cache_entry_is_recomputed(tmp_path: Path) -> None:
    counting = _Counting(FallbackEncoder())
    cached = CachedEncoder(counting, EmbeddingCache(tmp_path))
    audio = _song(2.0)
    cached.encode(audio)
    for path in tmp_path.rglob("*.safetensors"):
        path.write_bytes(b"garbage")
    cached.encode(audio)
    assert counting.calls == 2


def test_cached_encode_batch_encodes_each_distinct_miss_once(tmp_path: Path) -> None:
    counting = _Counting(FallbackEncoder())
    cached = CachedEncoder(counting, EmbeddingCache(tmp_path))
    a, b = _song(2.0, seed=8), _song(2.0, seed=9)
    first = cached.encode_batch([a, b, _song(2.0, seed=8)])  # the third is a again
    assert counting.calls == 2 and cached.misses == 2
    torch.testing.assert_close(first[0].layers, first[2].layers, rtol=0, atol=0)
    again = cached.encode_batch([b, a])
    assert counting.calls == 2 and cached.hits == 1 + 2
    torch.testing.assert_close(again[1].layers, first[0].layers, rtol=0, atol=0)

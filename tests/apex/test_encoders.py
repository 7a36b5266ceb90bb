"""apex.encoders: the MERT/HuBERT path through the real loading code, the cache, load_encoder.

Uses the tiny random MERT-style checkpoint from ``tests/conftest.py`` (``tiny_hubert_dir``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from apex.audio import SAMPLE_RATE, Audio, load_audio
from apex.encoders import (
    CachedEncoder,
    Embedding,
    EmbeddingCache,
    Encoder,
    EncoderUnavailable,
    FallbackEncoder,
    MertEncoder,
    load_encoder,
)


def _song(seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return load_audio((wave.astype(np.float32), SAMPLE_RATE))


@pytest.fixture(scope="module")
def reference_encoder(tiny_hubert_dir: Path) -> MertEncoder:
    return MertEncoder.from_pretrained(tiny_hubert_dir, precision="reference", device="cpu")


@pytest.fixture(scope="module")
def song_65s() -> Audio:
    return _song(65.0)


@pytest.fixture(scope="module")
def embedding_65s(reference_encoder: MertEncoder, song_65s: Audio) -> Embedding:
    """The 65 s song encoded once, all three segments in one batch (batch_size 4)."""
    assert reference_encoder.batch_size >= 3
    return reference_encoder.encode(song_65s)


def test_debug_checkpoint_looks_like_mert(tiny_hubert_dir: Path) -> None:
    config = json.loads((tiny_hubert_dir / "config.json").read_text())
    assert config["model_type"] == "mert_model" and "auto_map" in config
    assert (tiny_hubert_dir / "preprocessor_config.json").exists()
    size = sum(p.stat().st_size for p in tiny_hubert_dir.iterdir())
    assert size < 1_000_000


def test_loaded_weights_equal_the_files_tensors(
    tiny_hubert_dir: Path, reference_encoder: MertEncoder
) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(tiny_hubert_dir / "model.safetensors"))
    state = reference_encoder.model.state_dict()
    legacy = {"weight_g": "parametrizations.weight.original0", "weight_v": "original1"}
    assert any(k.endswith("weight_g") for k in saved), "debug checkpoint should use legacy names"
    for key, tensor in saved.items():
        name = key.replace("conv.weight_g", "conv." + legacy["weight_g"])
        name = name.replace("conv.weight_v", "conv.parametrizations.weight." + legacy["weight_v"])
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)
    assert len(saved) == len(state)


def test_shapes_and_segmentation(reference_encoder: MertEncoder, embedding_65s: Embedding) -> None:
    embedding = embedding_65s
    layers = reference_encoder.model.config.num_hidden_layers + 1
    hidden = reference_encoder.model.config.hidden_size
    assert reference_encoder.num_layers == layers and reference_encoder.dim == hidden
    assert embedding.layers.shape == (3, layers, hidden)
    assert embedding.layers_padded.shape == (3, layers, hidden)
    assert embedding.layers.dtype == torch.float32
    torch.testing.assert_close(embedding.seconds, torch.tensor([30.0, 30.0, 5.0]))
    assert embedding.mask.tolist() == [True, True, True]
    assert embedding.encoder_id == reference_encoder.encoder_id


def test_layers_padded_reproduces_the_reference_pooling(
    tiny_hubert_dir: Path,
    reference_encoder: MertEncoder,
    song_65s: Audio,
    embedding_65s: Embedding,
) -> None:
    """Independent re-implementation of the reference loop (inference.py), segment by segment."""
    from transformers import Wav2Vec2FeatureExtractor

    processor = Wav2Vec2FeatureExtractor.from_pretrained(str(tiny_hubert_dir))
    assert processor.do_normalize  # the debug checkpoint exercises the normalisation
    seg = 30 * processor.sampling_rate
    wave = song_65s.waveform
    expected = []
    for start in range(0, wave.shape[0], seg):
        segment = wave[start : start + seg]
        segment = torch.nn.functional.pad(segment, (0, seg - segment.shape[0]))
        inputs = processor(
            segment.numpy(), sampling_rate=processor.sampling_rate, return_tensors="pt"
        )
        with torch.no_grad():
            out = reference_encoder.model(**inputs, output_hidden_states=True)
        expected.append(torch.stack([h.mean(dim=1)[0] for h in out.hidden_states]))
    torch.testing.assert_close(
        embedding_65s.layers_padded, torch.stack(expected), rtol=1e-4, atol=1e-5
    )


def test_layers_mask_out_the_padding(
    reference_encoder: MertEncoder, song_65s: Audio, embedding_65s: Embedding
) -> None:
    embedding = embedding_65s
    # Full segments have no padding: both poolings agree.
    torch.testing.assert_close(embedding.layers[:2], embedding.layers_padded[:2])
    # The last segment (5 s real audio) pools only the frames computed from real samples.
    model = reference_encoder.model
    valid = int(model._get_feat_extract_output_lengths(torch.tensor(5 * SAMPLE_RATE)))
    assert valid == 5 * 75 - 1  # 75 frames per second, minus the first kernel's overhang
    segment = torch.nn.functional.pad(song_65s.waveform[60 * SAMPLE_RATE :], (0, 25 * SAMPLE_RATE))
    normed = (segment - segment.mean()) / torch.sqrt(segment.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        out = model(normed[None], output_hidden_states=True)
    expected = torch.stack([h[0, :valid].mean(dim=0) for h in out.hidden_states])
    torch.testing.assert_close(embedding.layers[2], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(embedding.layers[2], embedding.layers_padded[2], atol=1e-3)


def test_batch_size_does_not_change_the_result(
    tiny_hubert_dir: Path,
    reference_encoder: MertEncoder,
    song_65s: Audio,
    embedding_65s: Embedding,
) -> None:
    one = MertEncoder.from_pretrained(tiny_hubert_dir, precision="reference", batch_size=1)
    a, b = one.encode(song_65s), embedding_65s  # 1 segment per forward vs all 3 in one batch
    torch.testing.assert_close(a.layers, b.layers, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.layers_padded, b.layers_padded, rtol=1e-4, atol=1e-5)
    # Batching is not an output setting: the cache may serve one to the other.
    assert one.settings_key() == reference_encoder.settings_key()


def test_fast_precision_is_close_to_reference(
    tiny_hubert_dir: Path, reference_encoder: MertEncoder
) -> None:
    fast = MertEncoder.from_pretrained(tiny_hubert_dir, precision="fast", device="cpu")
    audio = _song(35.0, seed=1)
    a, b = reference_encoder.encode(audio).layers, fast.encode(audio).layers
    assert b.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert float(cosine.min()) > 0.99
    assert fast.settings_key() != reference_encoder.settings_key()


def test_short_clip_gives_one_padded_segment(reference_encoder: MertEncoder) -> None:
    embedding = reference_encoder.encode(_song(2.0))
    assert embedding.layers.shape[0] == 1
    torch.testing.assert_close(embedding.seconds, torch.tensor([2.0]))


def test_wrong_sample_rate_is_refused(reference_encoder: MertEncoder) -> None:
    audio = load_audio((np.zeros(32000, dtype=np.float32) + 0.1, 16000), sample_rate=16000)
    with pytest.raises(ValueError, match="24000 Hz"):
        reference_encoder.encode(audio)


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
    assert counting.calls == 2 and len(cached.cache) == 2
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


def test_load_encoder_specs(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    assert isinstance(load_encoder("fallback"), FallbackEncoder)
    mert = load_encoder(str(tiny_hubert_dir), precision="reference", device="cpu")
    assert isinstance(mert, MertEncoder) and mert.num_layers == 3
    wrapped = load_encoder("fallback", cache_dir=tmp_path)
    assert isinstance(wrapped, CachedEncoder) and wrapped.is_fallback


def test_offline_hub_id_raises_encoder_unavailable() -> None:
    with pytest.raises(EncoderUnavailable, match="Hugging Face Hub"):
        load_encoder("nobody-here/not-a-real-mert", local_files_only=True)
    with pytest.raises(EncoderUnavailable, match="neither a model directory"):
        load_encoder("no/such/dir")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_unrepresentable_or_broken_checkpoints_are_refused(
    tmp_path: Path, tiny_hubert_dir: Path
) -> None:
    deep = _copy(tiny_hubert_dir, tmp_path / "deep")
    config = json.loads((deep / "config.json").read_text())
    (deep / "config.json").write_text(json.dumps({**config, "deepnorm": True}))
    with pytest.raises(EncoderUnavailable, match="trust_remote_code"):
        MertEncoder.from_pretrained(deep)

    from safetensors.torch import load_file, save_file

    broken = _copy(tiny_hubert_dir, tmp_path / "broken")
    state = load_file(str(broken / "model.safetensors"))
    state.pop("feature_projection.projection.weight")
    state["pretraining_head.weight"] = torch.zeros(2)
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(EncoderUnavailable, match=r"feature_projection\.projection\.weight"):
        MertEncoder.from_pretrained(broken)

    extra = _copy(tiny_hubert_dir, tmp_path / "extra")
    state = load_file(str(extra / "model.safetensors"))
    state["pretraining_head.weight"] = torch.zeros(2)
    save_file(state, str(extra / "model.safetensors"))
    with pytest.warns(UserWarning, match="pretraining_head.weight"):
        MertEncoder.from_pretrained(extra)


def test_encode_batch_equals_encode_per_clip(
    reference_encoder: MertEncoder, song_65s: Audio, embedding_65s: Embedding
) -> None:
    """Segments of several songs share forward passes (3 + 1 + 2 segments in batches of 4)."""
    short, medium = _song(2.0, seed=4), _song(35.0, seed=5)
    batch = reference_encoder.encode_batch([song_65s, short, medium])
    singles = [embedding_65s, reference_encoder.encode(short), reference_encoder.encode(medium)]
    assert [e.num_segments for e in batch] == [3, 1, 2]
    for got, want in zip(batch, singles, strict=True):
        torch.testing.assert_close(got.layers, want.layers, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.layers_padded, want.layers_padded, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.seconds, want.seconds, rtol=0, atol=0)
        assert got.encoder_id == want.encoder_id
    assert reference_encoder.encode_batch([]) == []


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
        assert got.num_segments == want.num_segments
        torch.testing.assert_close(got.layers, want.layers, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.mask, want.mask, rtol=0, atol=0)
    assert encoder.encode_batch([]) == []


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


def test_channels_last_feature_encoder_is_the_same_arithmetic(
    reference_encoder: MertEncoder,
) -> None:
    import copy

    from apex.encoders.hubert import ChannelsLastFeatureEncoder, use_channels_last_features

    model = copy.deepcopy(reference_encoder.model)
    assert use_channels_last_features(model) and not use_channels_last_features(model)
    assert isinstance(model.feature_extractor, ChannelsLastFeatureEncoder)
    assert list(model.state_dict()) == list(reference_encoder.model.state_dict())
    wave = _song(3.0, seed=10).waveform[None].repeat(2, 1)
    with torch.inference_mode():
        want = reference_encoder.model.feature_extractor(wave)
        got = model.feature_extractor(wave)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_blocked_attention_is_the_same_arithmetic(reference_encoder: MertEncoder) -> None:
    import copy

    from apex.encoders.hubert import BlockedAttention, use_blocked_attention

    model = copy.deepcopy(reference_encoder.model)
    assert use_blocked_attention(model, block=50) == model.config.num_hidden_layers
    assert list(model.state_dict()) == list(reference_encoder.model.state_dict())
    wave = _song(3.0, seed=11).waveform[None].repeat(2, 1)  # 224 frames: 4 full blocks + 24
    with torch.inference_mode():
        want = reference_encoder.model(wave, output_hidden_states=True).hidden_states
        got = model(wave, output_hidden_states=True).hidden_states
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Masks as transformers passes them: bool (True = attend) or additive, [B, 1, T, T].
    original = reference_encoder.model.encoder.layers[0].attention
    blocked = BlockedAttention(original, block=3)
    hidden = torch.randn(2, 7, model.config.hidden_size)
    keep = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    keep[1, :, :, 5:] = False  # the second clip's last two frames are padding
    additive = torch.zeros(2, 1, 7, 7).masked_fill(~keep, float("-inf"))
    with torch.inference_mode():
        for mask in (keep, additive):
            torch.testing.assert_close(
                blocked(hidden, attention_mask=mask)[0],
                original(hidden, attention_mask=mask)[0],
                rtol=1e-4,
                atol=1e-5,
            )

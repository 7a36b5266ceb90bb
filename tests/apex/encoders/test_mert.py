"""apex.encoders.mert: the MERT/HuBERT path through the real loading code, on the tiny
random MERT-style checkpoint (``tiny_hubert_dir`` in ``tests/conftest.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from apex.audio import SAMPLE_RATE, Audio, load_audio
from apex.encoders import (
    Embedding,
    EncoderUnavailable,
    MertEncoder,
)
from tests.apex.encoders.clips import song as _song


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


def test_prefixed_keys_with_legacy_weight_norm_names_load(
    tmp_path: Path, tiny_hubert_dir: Path, reference_encoder: MertEncoder
) -> None:
    """``hubert.``-prefixed keys are stripped also for the renamed ``weight_g``/``weight_v``."""
    from safetensors.torch import load_file, save_file

    prefixed = _copy(tiny_hubert_dir, tmp_path / "prefixed")
    state = load_file(str(prefixed / "model.safetensors"))
    save_file({f"hubert.{k}": v for k, v in state.items()}, str(prefixed / "model.safetensors"))
    loaded = MertEncoder.from_pretrained(prefixed, precision="reference").model.state_dict()
    for key, tensor in reference_encoder.model.state_dict().items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0)


def test_encode_batch_equals_encode_per_clip(
    reference_encoder: MertEncoder, song_65s: Audio, embedding_65s: Embedding
) -> None:
    """Segments of several songs share forward passes (3 + 1 + 2 segments in batches of 4)."""
    short, medium = _song(2.0, seed=4), _song(35.0, seed=5)
    batch = reference_encoder.encode_batch([song_65s, short, medium])
    singles = [embedding_65s, reference_encoder.encode(short), reference_encoder.encode(medium)]
    assert [e.layers.shape[0] for e in batch] == [3, 1, 2]
    for got, want in zip(batch, singles, strict=True):
        torch.testing.assert_close(got.layers, want.layers, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.layers_padded, want.layers_padded, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.seconds, want.seconds, rtol=0, atol=0)
        assert got.encoder_id == want.encoder_id
    assert reference_encoder.encode_batch([]) == []


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_cpu_attention_is_sdpa_in_fp32_and_blocked_in_bf16(
    tiny_hubert_dir: Path, reference_encoder: MertEncoder, monkeypatch, dtype: torch.dtype
) -> None:
    """The fast path picks its attention by compute dtype (fp32: transformers' SDPA, measured
    2.5x faster than blocked GEMMs on an AVX2 CPU; bf16: the blocked tiles) and scores alike."""
    from apex.encoders import mert
    from apex.encoders.hubert import BlockedAttention
    from apex.heads import ReferenceHeads

    monkeypatch.setattr(mert, "_fast_dtype", lambda device: dtype)  # bf16 emulated where absent
    fast = MertEncoder.from_pretrained(tiny_hubert_dir, precision="fast", device="cpu")
    kinds = {type(layer.attention) for layer in fast.model.encoder.layers}
    assert (kinds == {BlockedAttention}) == (dtype == torch.bfloat16)
    audio = _song(35.0, seed=3)
    a, b = reference_encoder.encode(audio), fast.encode(audio)
    torch.manual_seed(0)
    layers, dim = a.layers.shape[1:]
    heads = ReferenceHeads(input_dim=dim, num_layers=layers, layer_indices=(1, 2)).eval()
    with torch.no_grad():
        sa, sb = heads(a.layers_padded[None]), heads(b.layers_padded[None])
    tolerance = 1e-4 if dtype == torch.float32 else 0.5  # 0-100 / 1-5 scale points
    for name in sa:
        assert float((sa[name] - sb[name]).abs().max()) <= tolerance, name


def test_default_batch_is_one_segment_on_cpu(tiny_hubert_dir: Path) -> None:
    """On CPU one 30 s segment per forward is faster per segment than 3-4 (their activations
    outgrow the caches); an explicit batch_size still wins, and a bad one is refused."""
    assert MertEncoder.from_pretrained(tiny_hubert_dir, device="cpu").batch_size == 1
    assert MertEncoder.from_pretrained(tiny_hubert_dir, device="cpu", batch_size=3).batch_size == 3
    with pytest.raises(ValueError, match="batch_size"):
        MertEncoder.from_pretrained(tiny_hubert_dir, device="cpu", batch_size=0)


def test_mert_95m_config_has_the_published_shape() -> None:
    """It relies on HubertConfig's defaults being MERT-v1-95M's shape; this says if they move."""
    import math

    from apex.encoders.hubert import mert_95m_config

    config = mert_95m_config(num_hidden_layers=2)
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        768,
        12,
        3072,
    )
    assert config.num_hidden_layers == 2 and config.conv_dim == (512,) * 7
    assert math.prod(config.conv_stride) == 320  # 75 frames/s at 24 kHz
    assert config.conv_kernel == (10, 3, 3, 3, 3, 2, 2) and config.feat_extract_norm == "group"
    assert config.num_conv_pos_embeddings == 128 and config.num_conv_pos_embedding_groups == 16
    assert config.layerdrop == config.hidden_dropout == config.attention_dropout == 0.0

"""apex.encoders.fallback: shape, determinism, and that the descriptors see what they claim to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apex.audio import SAMPLE_RATE, Audio, load_audio
from apex.encoders.fallback import FALLBACK_DIM, FALLBACK_FEATURES, FallbackEncoder, describe


def _tone(
    seconds: float = 4.0,
    *,
    noise: float = 0.0,
    vibrato_cents: float = 0.0,
    drive: float = 1.0,
    seed: int = 0,
) -> Audio:
    """A 440 Hz tone with harmonics, pulsed in 0.5 s notes, with optional damage."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    cents = vibrato_cents * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(440.0 * 2 ** (cents / 1200)) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 5))
    wave *= 0.5 + 0.5 * (np.mod(t, 0.5) < 0.4)  # note pulses give onsets
    wave = np.clip(drive * wave / np.abs(wave).max(), -1, 1) * 0.8
    wave = wave + noise * rng.standard_normal(t.size)
    return load_audio((wave.astype(np.float32), SAMPLE_RATE))


def _feature(vector: torch.Tensor, name: str) -> float:
    return float(vector[FALLBACK_FEATURES.index(name)])


def test_names_match_the_dimension() -> None:
    assert len(FALLBACK_FEATURES) == FALLBACK_DIM == 176
    assert len(set(FALLBACK_FEATURES)) == FALLBACK_DIM


def test_shape_segments_and_flags() -> None:
    encoder = FallbackEncoder()
    assert encoder.is_fallback and encoder.num_layers == 1 and encoder.dim == FALLBACK_DIM
    audio = load_audio((np.tile(_tone(5.0).waveform.numpy(), 13), SAMPLE_RATE))  # 65 s
    embedding = encoder.encode(audio)
    assert embedding.layers.shape == (3, 1, FALLBACK_DIM)
    assert embedding.layers.dtype == torch.float32
    assert torch.isfinite(embedding.layers).all()
    torch.testing.assert_close(embedding.seconds, torch.tensor([30.0, 30.0, 5.0]))
    torch.testing.assert_close(embedding.layers, embedding.layers_padded)
    assert embedding.encoder_id == "fallback"


def test_deterministic() -> None:
    audio = _tone(noise=0.05)
    a, b = FallbackEncoder().encode(audio), FallbackEncoder().encode(audio)
    assert torch.equal(a.layers, b.layers)


def test_separates_a_clean_tone_from_the_same_tone_with_noise() -> None:
    clean, clean_again = describe(_tone().waveform), describe(_tone(seed=1).waveform)
    noisy = describe(_tone(noise=0.05).waveform)
    scale = clean.abs() + 1.0
    same = ((clean_again - clean) / scale).norm()
    different = ((noisy - clean) / scale).norm()
    assert different > 20 * same + 1e-3
    assert _feature(noisy, "flatness_mean") > 10 * _feature(clean, "flatness_mean")
    assert _feature(noisy, "hf_noise_floor") > _feature(clean, "hf_noise_floor") + 10.0


def test_sees_clipping_and_vibrato() -> None:
    clean = describe(_tone().waveform)
    clipped = describe(_tone(drive=8.0).waveform)
    assert _feature(clipped, "clip_above_95") > _feature(clean, "clip_above_95") + 0.2
    assert _feature(clipped, "crest_factor") < _feature(clean, "crest_factor") - 3.0
    vibrato = describe(_tone(vibrato_cents=40.0).waveform)
    assert _feature(vibrato, "pitch_wobble_rms") > 3 * _feature(clean, "pitch_wobble_rms") + 1.0
    assert _feature(vibrato, "pitch_steady_share") < _feature(clean, "pitch_steady_share")


def test_sees_a_low_pass() -> None:
    import torchaudio.functional as taf

    audio = _tone(noise=0.02)
    muffled = taf.lowpass_biquad(audio.waveform, SAMPLE_RATE, 500.0)
    bright, dull = describe(audio.waveform), describe(muffled)
    assert _feature(dull, "rolloff85_mean") < _feature(bright, "rolloff85_mean")
    assert _feature(dull, "energy_above_4k") < _feature(bright, "energy_above_4k") - 10.0


@pytest.mark.parametrize("seconds", [0.01, 1.0])
def test_tiny_inputs_stay_finite(seconds: float) -> None:
    wave = torch.zeros(round(seconds * SAMPLE_RATE))
    vector = describe(wave)
    assert vector.shape == (FALLBACK_DIM,) and torch.isfinite(vector).all()


def test_encode_equals_describe_of_each_segment() -> None:
    audio = load_audio((np.tile(_tone(5.0, noise=0.01).waveform.numpy(), 7), SAMPLE_RATE))  # 35 s
    embedding = FallbackEncoder().encode(audio)
    wave = audio.waveform
    torch.testing.assert_close(embedding.layers[0, 0], describe(wave[: 30 * SAMPLE_RATE]))
    torch.testing.assert_close(embedding.layers[1, 0], describe(wave[30 * SAMPLE_RATE :]))


@pytest.mark.parametrize("gain_db", [-20.0, -6.0])
def test_loudness_agrees_with_time_domain_bs1770(gain_db: float) -> None:
    """The STFT-domain K-weighting against torchaudio's filters (which only differ by clamping
    their output to [-1, 1], out of reach at these levels); +x dB of gain reads as +x LU."""
    import torchaudio.functional as taf

    wave = _tone(6.0, noise=0.02).waveform * 10 ** (gain_db / 20)
    expected = float(taf.loudness(wave[None], SAMPLE_RATE))
    assert abs(_feature(describe(wave), "loudness_lufs") - expected) < 0.05
    louder = _feature(describe(wave * 2.0), "loudness_lufs")
    assert abs(louder - _feature(describe(wave), "loudness_lufs") - 6.02) < 0.01


def test_describe_leaves_the_callers_thread_count_alone() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        describe(_tone(2.0).waveform)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)

"""apex.audio: decoding, mono mix, resampling, and one clear AudioError per bad input."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from apex.audio import SAMPLE_RATE, Audio, AudioError, load_audio


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,suffix", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg")])
def test_file_formats_decode_to_mono_at_24k(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    sf.write(path, np.stack([_tone(2.0, 48000), _tone(2.0, 48000)], axis=1), 48000, format=fmt)
    audio = load_audio(path)
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.waveform.ndim == 1 and audio.waveform.dtype == torch.float32
    assert audio.duration_s == pytest.approx(2.0, abs=1e-3)
    assert audio.original_sample_rate == 48000 and audio.original_channels == 2
    assert audio.source == path.name and audio.warnings == []


def test_mp3_decodes_when_libsndfile_supports_it(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile build has no MP3 support")
    path = tmp_path / "clip.mp3"
    sf.write(path, _tone(2.0, 44100), 44100, format="MP3")
    audio = load_audio(path.read_bytes())
    # MP3 encoders add priming/padding frames, so the length is only approximately 2 s.
    assert audio.duration_s == pytest.approx(2.0, abs=0.1)
    assert audio.source == "<bytes>"


def test_stereo_is_the_average_of_the_channels() -> None:
    left, right = _tone(1.5, SAMPLE_RATE, 440.0), _tone(1.5, SAMPLE_RATE, 660.0, amp=0.25)
    audio = load_audio((np.stack([left, right], axis=1), SAMPLE_RATE))
    torch.testing.assert_close(audio.waveform, torch.from_numpy((left + right) / 2))
    # Channel-first arrays are recognised by shape (channels are the smaller axis).
    channel_first = load_audio((np.stack([left, right]), SAMPLE_RATE))
    torch.testing.assert_close(channel_first.waveform, audio.waveform)


def test_resampling_44k1_to_24k_keeps_duration_and_pitch() -> None:
    rate = 44100
    audio = load_audio((_tone(2.0, rate, 1000.0), rate))
    assert audio.waveform.shape[0] == math.ceil(2.0 * rate * SAMPLE_RATE / rate)
    spectrum = torch.fft.rfft(audio.waveform).abs()
    peak_hz = float(spectrum.argmax()) * SAMPLE_RATE / audio.waveform.shape[0]
    assert peak_hz == pytest.approx(1000.0, abs=1.0)


def test_integer_pcm_arrays_are_scaled_to_unit_range() -> None:
    pcm = (_tone(1.2, 16000) * 32767).astype(np.int16)
    audio = load_audio((pcm, 16000))
    assert 0.4 < float(audio.waveform.abs().max()) < 0.6


def test_silence_is_accepted_with_a_warning() -> None:
    audio = load_audio((np.zeros(SAMPLE_RATE * 2, dtype=np.float32), SAMPLE_RATE))
    assert audio.duration_s == pytest.approx(2.0)
    assert len(audio.warnings) == 1 and "silent" in audio.warnings[0]


def test_content_hash_depends_on_samples_only() -> None:
    a = load_audio((_tone(1.5, SAMPLE_RATE), SAMPLE_RATE))
    b = load_audio(_wav_bytes(_tone(1.5, SAMPLE_RATE), SAMPLE_RATE, "FLAC"))
    c = load_audio((_tone(1.5, SAMPLE_RATE, 441.0), SAMPLE_RATE))
    assert len(a.content_hash) == 64
    assert a.content_hash != c.content_hash
    # FLAC is 16-bit: a different waveform, hence a different hash (no false cache hits).
    assert a.content_hash != b.content_hash
    assert a.content_hash == load_audio((_tone(1.5, SAMPLE_RATE), SAMPLE_RATE)).content_hash


def test_audio_input_is_passed_through_or_resampled() -> None:
    audio = load_audio((_tone(1.5, SAMPLE_RATE), SAMPLE_RATE))
    assert load_audio(audio) is audio
    assert isinstance(load_audio(audio, sample_rate=16000), Audio)
    assert load_audio(audio, sample_rate=16000).waveform.shape[0] == 24000


def _truncated_wav() -> bytes:
    data = _wav_bytes(_tone(2.0, SAMPLE_RATE), SAMPLE_RATE)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "make_source,expected",
    [
        (lambda tmp: b"this is a text file, not a song" * 20, "could not decode"),
        (lambda tmp: b"", "empty"),
        (lambda tmp: _truncated_wav(), "truncated"),
        (lambda tmp: _wav_bytes(_tone(2.0, SAMPLE_RATE), SAMPLE_RATE)[:30], "could not decode"),
        (lambda tmp: (np.full(SAMPLE_RATE * 2, np.nan, dtype=np.float32), SAMPLE_RATE), "NaN"),
        (lambda tmp: (_tone(0.5, SAMPLE_RATE), SAMPLE_RATE), "too short"),
        (lambda tmp: (np.zeros(SAMPLE_RATE * 660, dtype=np.float32), SAMPLE_RATE), "longer"),
        (lambda tmp: (np.zeros(100, dtype=np.float32), 10), "sample rate 10 Hz"),
        (lambda tmp: (np.zeros((SAMPLE_RATE * 2, 64), dtype=np.float32), SAMPLE_RATE), "64 chan"),
        (lambda tmp: (np.zeros((0,), dtype=np.float32), SAMPLE_RATE), "no samples"),
        (lambda tmp: (np.array(["a", "b"]), SAMPLE_RATE), "float or integer"),
        (lambda tmp: 12345, "Cannot load audio from a int"),
    ],
    ids=[
        "not-audio",
        "empty-bytes",
        "truncated-wav",
        "truncated-header",
        "nan",
        "half-second",
        "eleven-minutes",
        "sr-10",
        "64-channels",
        "zero-samples",
        "strings",
        "wrong-type",
    ],
)
def test_bad_inputs_raise_a_clear_audio_error(tmp_path: Path, make_source, expected: str) -> None:
    with pytest.raises(AudioError, match=expected):
        load_audio(make_source(tmp_path), max_seconds=600.0)


def test_bad_files_raise_a_clear_audio_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(_truncated_wav())
    with pytest.raises(AudioError, match="truncated"):
        load_audio(truncated)
    with pytest.raises(AudioError, match=r"unsupported format '\.m4a'"):
        (tmp_path / "song.m4a").write_bytes(b"\x00" * 100)
        load_audio(tmp_path / "song.m4a")
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    long_file = tmp_path / "long.flac"
    sf.write(long_file, np.zeros(8000 * 700, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="longer than the 600 s limit"):
        load_audio(long_file)


def test_max_seconds_is_configurable() -> None:
    clip = (_tone(3.0, SAMPLE_RATE), SAMPLE_RATE)
    assert load_audio(clip, max_seconds=3.0).duration_s == pytest.approx(3.0)
    with pytest.raises(AudioError, match="longer"):
        load_audio(clip, max_seconds=2.0)

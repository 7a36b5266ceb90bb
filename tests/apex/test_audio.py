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


def silent_flac(rate: int, channels: int, seconds: float) -> bytes:
    """A 16-bit FLAC of digital silence, written in blocks (small in memory and on disk)."""
    buffer, block = io.BytesIO(), 1 << 17
    with sf.SoundFile(buffer, "w", rate, channels, "PCM_16", format="FLAC") as out:
        zeros, left = np.zeros((block, channels), dtype=np.int16), round(rate * seconds)
        while left > 0:
            out.write(zeros[: min(block, left)])
            left -= block
    return buffer.getvalue()


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
    assert audio.name == path.name and audio.warnings == []


def test_mp3_decodes_when_libsndfile_supports_it(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile build has no MP3 support")
    path = tmp_path / "clip.mp3"
    sf.write(path, _tone(2.0, 44100), 44100, format="MP3")
    audio = load_audio(path.read_bytes())
    # MP3 encoders add priming/padding frames, so the length is only approximately 2 s.
    assert audio.duration_s == pytest.approx(2.0, abs=0.1)
    assert audio.name == "<bytes>"


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


# ---------------------------------------------------------------------- decoding cost
def _with_total_samples(flac: bytes, total: int) -> bytes:
    """The FLAC with STREAMINFO's 36-bit total-samples field set to ``total`` (0 = unknown).

    Layout (FLAC format spec, METADATA_BLOCK_STREAMINFO): "fLaC", a 4-byte block header, then
    min/max block size (2 x 16 bits), min/max frame size (2 x 24 bits), and at byte 10 of the
    block 64 bits holding sample rate (20), channels - 1 (3), bits - 1 (5), total samples (36).
    """
    assert flac[:4] == b"fLaC" and flac[4] & 0x7F == 0  # first block is STREAMINFO
    data = bytearray(flac)
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | total
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def _peak_rss_growth_mb(action) -> float:
    """Peak RSS growth of this process during ``action()``, MB (Linux: VmHWM after clear_refs)."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("peak RSS is read from /proc/self/status (Linux)")

    def field(name: str) -> float:
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith(name))
        return int(line.split()[1]) / 1024

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = field("VmRSS:")
    action()
    return field("VmHWM:") - before


def test_costly_wide_file_is_refused_before_decoding() -> None:
    # 384 kHz x 8 channels x 150 s: 460.8 M samples (1.8 GB as float32) from a tiny FLAC.
    header_says_150_s = _with_total_samples(silent_flac(384_000, 8, 1.0), 384_000 * 150)
    growth = []

    def load() -> None:
        with pytest.raises(AudioError, match="million samples") as refused:
            load_audio(header_says_150_s)
        growth.append(str(refused.value))

    assert _peak_rss_growth_mb(load) < 50
    assert "384000 Hz x 8 channels x 150.0 s" in growth[0] and "ffmpeg" in growth[0]


def test_big_accepted_file_decodes_in_bounded_memory() -> None:
    # 384 kHz x 8 channels x 40 s is accepted (within the decoding budget) but is 123 M samples,
    # 491 MB as float32 if decoded whole: block-wise decoding must stay far below that.
    data = silent_flac(384_000, 8, 40.0)
    assert len(data) < 1_000_000
    result = []
    growth = _peak_rss_growth_mb(lambda: result.append(load_audio(data)))
    audio = result[0]
    assert audio.duration_s == pytest.approx(40.0, abs=1e-3)
    assert audio.original_sample_rate == 384_000 and audio.original_channels == 8
    assert any("silent" in w for w in audio.warnings)
    assert growth < 300, f"peak RSS grew by {growth:.0f} MB"


def test_block_decoding_matches_whole_decoding() -> None:
    import torchaudio.functional as taf

    from apex.audio import _decode

    rng = np.random.default_rng(0)
    stereo = np.stack([_tone(7.3, 44100), 0.3 * rng.standard_normal(round(7.3 * 44100))], 1)
    data = _wav_bytes(stereo.astype(np.float32), 44100, fmt="FLAC")
    whole = load_audio(data)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    reference = taf.resample(torch.from_numpy(decoded).mean(dim=1), 44100, SAMPLE_RATE)
    torch.testing.assert_close(whole.waveform, reference, rtol=0, atol=0)  # small: one shot
    # Force block decoding with blocks that do not divide the signal or the resampling ratio.
    blocks = _decode(
        io.BytesIO(data), "<bytes>", SAMPLE_RATE, 600.0, whole_samples=1000, block_samples=24_690
    )
    assert blocks.waveform.shape == reference.shape
    torch.testing.assert_close(blocks.waveform, reference, rtol=0, atol=1e-5)  # f32 rounding
    assert blocks.original_channels == 2 and blocks.original_sample_rate == 44100


@pytest.mark.parametrize("total", [0, (1 << 36) - 1], ids=["zero", "absurd"])
def test_lying_length_header_says_the_file_is_damaged(total: int) -> None:
    lying = _with_total_samples(silent_flac(8000, 1, 2.0), total)
    with pytest.raises(AudioError, match="the file is damaged") as refused:
        load_audio(lying)
    assert "longer than" not in str(refused.value)


def test_header_claiming_more_than_is_there_is_damaged() -> None:
    lying = _with_total_samples(silent_flac(8000, 1, 2.0), 8000 * 100)
    with pytest.raises(AudioError, match="damaged"):
        load_audio(lying)

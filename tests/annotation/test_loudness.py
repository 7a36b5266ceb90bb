"""Loudness measurement (BS.1770-4 loudness, 4x true peak) and matched copies made once."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotation.loudness import LoudnessMatcher, measure, true_peak_dbtp

RATE = 48_000
TARGET, CEILING = -16.0, -1.0


def sine(amplitude: float, seconds: float = 3.0, hz: float = 997.0, channels: int = 2):
    t = np.arange(int(seconds * RATE)) / RATE
    tone = amplitude * np.sin(2 * np.pi * hz * t)
    return np.stack([tone] * channels, axis=1)


def write(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    sf.write(path, samples, rate, subtype="FLOAT")
    return path


def test_a_full_scale_sine_in_one_channel_reads_minus_3_lufs() -> None:
    # BS.1770-4 (section 2.1): a 0 dBFS 1 kHz sine in one channel reads -3.01 LKFS.
    assert measure(sine(1.0, channels=1), RATE).lufs == pytest.approx(-3.01, abs=0.05)
    # Both channels: twice the power, +3.01 dB.
    assert measure(sine(1.0), RATE).lufs == pytest.approx(0.0, abs=0.05)


def test_true_peak_finds_the_inter_sample_peak() -> None:
    # A sine at fs/4 sampled 45 degrees off its crests: every sample is at 0.707, the waveform
    # between them reaches 1.0. Sample peak says -3.01 dBFS; the true peak is 0 dBTP.
    n = np.arange(RATE)
    tone = np.sin(2 * np.pi * n / 4 + np.pi / 4)
    tone *= np.minimum(1.0, np.minimum(n, n[::-1]) / 2000)  # fades: no start/stop transient
    assert 20 * math.log10(np.max(np.abs(tone))) == pytest.approx(-3.01, abs=0.01)
    assert true_peak_dbtp(tone) == pytest.approx(0.0, abs=0.1)


def test_silence_has_no_loudness_and_no_gain(tmp_path: Path) -> None:
    assert measure(np.zeros((RATE, 2)), RATE).lufs is None
    source = write(tmp_path / "quiet.wav", np.zeros((RATE, 2)))
    served = LoudnessMatcher(tmp_path / "cache").serve(source)
    assert served.path == source and not served.matched and served.gain_db == 0.0


def test_too_short_or_too_many_channels_is_refused() -> None:
    with pytest.raises(ValueError, match="400 ms"):
        measure(np.zeros(RATE // 10), RATE)
    with pytest.raises(ValueError, match="5 channels"):
        measure(np.ones((RATE, 6)) * 0.1, RATE)


@pytest.mark.parametrize("offset_db", [+12.0, -12.0])
def test_loud_and_quiet_clips_are_served_at_the_target(tmp_path: Path, offset_db: float) -> None:
    # A stereo 997 Hz sine of amplitude a reads 20 log10(a) LUFS (test above).
    source = write(tmp_path / "clip.wav", sine(10 ** ((TARGET + offset_db) / 20)))
    matcher = LoudnessMatcher(tmp_path / "cache", target_lufs=TARGET, max_true_peak_dbtp=CEILING)
    served = matcher.serve(source)
    assert served.matched and served.encoded and served.path != source
    assert served.original.lufs == pytest.approx(TARGET + offset_db, abs=0.1)  # original recorded
    assert served.gain_db == pytest.approx(-offset_db, abs=0.1)
    samples, rate = sf.read(served.path, always_2d=True)
    assert rate == RATE and samples.shape == (3 * RATE, 2)
    # Checked independently of the meter: the served sine's amplitude is the target's.
    assert np.max(np.abs(samples)) == pytest.approx(10 ** (TARGET / 20), rel=0.01)
    again = measure(samples, rate)
    assert abs(again.lufs - TARGET) <= 0.5 and again.true_peak_dbtp <= CEILING


def test_a_peaky_clip_is_held_under_the_ceiling_not_clipped(tmp_path: Path) -> None:
    samples = sine(10 ** (-34 / 20))
    samples[RATE :: RATE // 4] = 0.5  # sparse clicks at -6 dBFS: peaky, barely louder
    served = LoudnessMatcher(tmp_path / "c").serve(write(tmp_path / "peaky.wav", samples))
    out, _ = sf.read(served.path, always_2d=True)
    played = measure(out, RATE)
    assert played.true_peak_dbtp <= CEILING + 0.01
    assert np.max(np.abs(out)) < 1.0  # nothing clipped
    # The full gain to -16 LUFS would push the clicks over 0 dBFS: the gain stops at the ceiling.
    assert served.gain_db < TARGET - served.original.lufs
    assert played.lufs < TARGET - 0.5


def test_matching_twice_does_not_re_encode(tmp_path: Path) -> None:
    source = write(tmp_path / "clip.wav", sine(0.5))
    folder = tmp_path / "cache"
    first = LoudnessMatcher(folder).serve(source)
    stat = os.stat(first.path)
    second = LoudnessMatcher(folder).serve(source)  # a new process: the disk cache answers
    third_matcher = LoudnessMatcher(folder)
    third = third_matcher.serve(source)
    fourth = third_matcher.serve(source)  # and in one process, the memo
    assert first.encoded and not (second.encoded or third.encoded or fourth.encoded)
    assert second.path == third.path == fourth.path == first.path
    after = os.stat(first.path)
    assert (after.st_mtime_ns, after.st_ino) == (stat.st_mtime_ns, stat.st_ino)
    assert second.original == first.original and len(list(folder.glob("*.wav"))) == 1


def test_matching_off_serves_the_original_but_still_measures(tmp_path: Path) -> None:
    source = write(tmp_path / "clip.wav", sine(0.5))
    served = LoudnessMatcher(tmp_path / "cache", enabled=False).serve(source)
    assert served.path == source and not served.matched and served.gain_db == 0.0
    assert served.original.lufs == pytest.approx(20 * math.log10(0.5), abs=0.1)
    assert not list((tmp_path / "cache").glob("*.wav"))  # nothing re-encoded
    on = LoudnessMatcher(tmp_path / "cache").serve(source)  # switching it on later matches
    assert on.matched and on.path != source


def test_a_new_target_makes_a_new_copy(tmp_path: Path) -> None:
    source = write(tmp_path / "clip.wav", sine(0.5))
    a = LoudnessMatcher(tmp_path / "c", target_lufs=-16.0).serve(source)
    b = LoudnessMatcher(tmp_path / "c", target_lufs=-23.0).serve(source)
    assert a.path != b.path and b.encoded
    assert measure(sf.read(b.path)[0], RATE).lufs == pytest.approx(-23.0, abs=0.5)


def test_a_clip_bs1770_cannot_measure_is_played_as_it_is(tmp_path: Path) -> None:
    source = write(tmp_path / "six.wav", sine(0.5, channels=6))  # BS.1770 covers at most 5
    served = LoudnessMatcher(tmp_path / "cache").serve(source)
    assert served.path == source and not served.matched and served.original.lufs is None

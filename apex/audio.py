"""Audio loading: any file, bytes or array in, a mono float32 waveform at the encoder's rate out.

Decoding uses soundfile (libsndfile). The build shipped with soundfile>=0.12 wheels is libsndfile
1.2, which reads WAV, FLAC, OGG/Vorbis, OGG/Opus, AIFF and MP3 (MPEG-1/2 layer III, libsndfile
>= 1.1); formats it cannot read (AAC/M4A, WMA, video containers) are rejected with a message that
says how to convert them. Channels are averaged to mono and the result is resampled with
``torchaudio.functional.resample`` (default windowed-sinc settings), exactly as the APEX reference
does, so embeddings match the published pipeline.

What decoding may cost is bounded, not only the duration: a file whose header claims more input
samples (rate x channels x seconds) than ``MAX_DECODED_SAMPLES_PER_S * max_seconds`` is refused
before decoding, a header that gives no usable length is reported as damaged, and files above
``WHOLE_DECODE_SAMPLES`` are decoded block by block with the down-mix and the resampling streamed
(:mod:`apex.resample`), so peak memory stays at a few megabytes plus the 24 kHz output.

Every problem with the input raises :class:`AudioError`, whose message says what was wrong and
what to do about it. Silence is not an error (it can be scored) but is noted in ``Audio.warnings``.
"""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from apex.audio_checks import (
    CONVERT_HINT,
    EMPTY,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MAX_SECONDS,
    MIN_SAMPLE_RATE,
    MIN_SECONDS,
    SUPPORTED_EXTENSIONS,
    AudioError,
    check_duration,
    check_file,
    check_header,
    check_rate_and_channels,
    check_riff_complete,
    not_finite,
    too_long,
)

SAMPLE_RATE = 24_000
"""MERT's input rate, Hz: every encoder here consumes audio at this rate."""
WHOLE_DECODE_SAMPLES = 1 << 24
"""Files of at most this many input samples (64 MB as float32, about 3 min of 44.1 kHz stereo)
are decoded in one read and resampled in one call, exactly as the reference does."""
BLOCK_SAMPLES = 1 << 21
"""Bigger files are read this many input samples (8 MB as float32) at a time, down-mixed and
resampled block by block (:class:`apex.resample.StreamingResampler`)."""
SILENCE_PEAK = 1e-4
"""Peak amplitude (full scale = 1.0) below which a clip is flagged as silent (about -80 dBFS)."""

AudioSource = str | Path | bytes | tuple[np.ndarray, int]


@dataclass
class Audio:
    """A decoded, mono, resampled clip.

    Attributes:
        waveform: ``[T]`` float32 samples in [-1, 1] (not clipped), mono, at ``sample_rate``.
        sample_rate: Rate of ``waveform``, Hz.
        source: File name, ``"<bytes>"`` or ``"<array>"``.
        original_sample_rate: Rate of the input before resampling, Hz.
        original_channels: Channel count of the input before averaging.
        warnings: Human-readable notes about usable-but-odd input (e.g. silence).
    """

    waveform: torch.Tensor
    sample_rate: int
    source: str
    original_sample_rate: int
    original_channels: int
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Length of ``waveform``, seconds."""
        return self.waveform.shape[-1] / self.sample_rate

    @cached_property
    def content_hash(self) -> str:
        """sha256 hex of the resampled float32 samples and the rate (the embedding-cache key)."""
        digest = hashlib.sha256()
        digest.update(struct.pack("<I", self.sample_rate))
        digest.update(self.waveform.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
        return digest.hexdigest()


def load_audio(
    source: AudioSource | Audio,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float = MAX_SECONDS,
) -> Audio:
    """Decode ``source`` into a mono float32 waveform at ``sample_rate``.

    Args:
        source: A file path, the raw bytes of an audio file, a ``(samples, rate)`` pair where
            samples is ``[T]`` or ``[T, C]`` / ``[C, T]`` (the smaller axis is taken as channels),
            or an already-loaded :class:`Audio` (resampled if its rate differs).
        sample_rate: Output rate, Hz.
        max_seconds: Longest accepted input, seconds.

    Returns:
        The decoded :class:`Audio`.

    Raises:
        AudioError: Empty, truncated, undecodable or unsupported input; non-finite samples; a
            clip shorter than ``MIN_SECONDS`` or longer than ``max_seconds``; an absurd sample
            rate or channel count.
    """
    if isinstance(source, Audio):
        if source.sample_rate == sample_rate:
            return source
        return _finish(
            source.waveform.numpy(), source.sample_rate, source.source, sample_rate, max_seconds
        )
    if isinstance(source, tuple):
        if len(source) != 2:
            raise AudioError("An array input must be a (samples, sample_rate) pair.")
        samples, rate = _from_array(*source)
        name = "<array>"
    elif isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise AudioError(f"<bytes>: {EMPTY}")
        return _decode(io.BytesIO(data), "<bytes>", sample_rate, max_seconds)
    elif isinstance(source, str | Path):
        path = Path(source)
        check_file(path)
        with path.open("rb") as handle:
            return _decode(handle, path.name, sample_rate, max_seconds)
    else:
        raise AudioError(
            f"Cannot load audio from a {type(source).__name__}; pass a file path, the file's "
            "bytes, or a (numpy array, sample_rate) pair."
        )
    return _finish(samples, rate, name, sample_rate, max_seconds)


def _decode(
    handle: BinaryIO,
    name: str,
    sample_rate: int,
    max_seconds: float,
    *,
    whole_samples: int = WHOLE_DECODE_SAMPLES,
    block_samples: int = BLOCK_SAMPLES,
) -> Audio:
    """Decode an open audio file with soundfile, refusing before decoding what would cost too much.

    Files of at most ``whole_samples`` samples (all channels) are read whole (``[T, C]`` float32,
    as the reference does); bigger ones in blocks of about ``block_samples`` with the down-mix and
    the resampling streamed, so memory stays at a few blocks plus the ``[T]`` output at
    ``sample_rate`` whatever the input's rate, channels and length.
    """
    import soundfile as sf

    check_riff_complete(handle, name)
    try:
        with sf.SoundFile(handle) as sound:
            rate, channels, frames = sound.samplerate, sound.channels, sound.frames
            check_rate_and_channels(rate, channels, name)
            check_header(frames, rate, channels, name, max_seconds)
            if frames * channels <= whole_samples:
                samples = sound.read(dtype="float32", always_2d=True)
            else:
                mono, read = _read_blocks(sound, name, sample_rate, max_seconds, block_samples)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(
            f"{name}: could not decode this as audio ({error}); the file is damaged, truncated "
            f"or not audio at all. If it plays elsewhere, {CONVERT_HINT}."
        ) from error
    if frames * channels <= whole_samples:
        return _finish(samples, rate, name, sample_rate, max_seconds)
    return _checked(mono, read, rate, channels, name, sample_rate, max_seconds)


def _read_blocks(
    sound: object, name: str, sample_rate: int, max_seconds: float, block_samples: int
) -> tuple[torch.Tensor, int]:
    """Down-mix and resample block by block; returns the ``[T]`` output and the frames read."""
    from apex.resample import StreamingResampler

    rate, channels = sound.samplerate, sound.channels  # type: ignore[attr-defined]
    per_block = max(1, block_samples // channels)
    limit = max_seconds * rate * 1.01 + rate  # the header may understate the length
    resampler = StreamingResampler(rate, sample_rate) if rate != sample_rate else None
    pieces: list[torch.Tensor] = []
    read = 0
    while True:
        block = sound.read(per_block, dtype="float32", always_2d=True)  # type: ignore[attr-defined]
        if not len(block):
            break
        read += len(block)
        if read > limit:
            raise too_long(read / rate, max_seconds, name)
        if not np.isfinite(block).all():
            raise not_finite(name)
        mono = torch.from_numpy(block).mean(dim=1)
        if resampler is None:
            pieces.append(mono)
        else:
            resampler.push(mono)
    if resampler is not None:
        return resampler.finish(), read
    return (torch.cat(pieces) if pieces else torch.zeros(0)), read


def _from_array(samples: object, rate: object) -> tuple[np.ndarray, int]:
    """Validate a ``(samples, rate)`` pair; returns ``[T, C]`` float32 samples and the rate."""
    try:
        rate = int(rate)  # type: ignore[call-overload]
        array = np.asarray(samples)
    except (TypeError, ValueError) as error:
        raise AudioError(f"Array input must be (numpy array, int sample rate): {error}") from error
    if array.dtype.kind in "iu":
        # Integer PCM: scale to [-1, 1) the way soundfile does when decoding integer files.
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    elif array.dtype.kind != "f":
        raise AudioError(f"Array samples must be float or integer PCM, not {array.dtype}.")
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim == 2:
        # The smaller axis is channels: at >= 1 s, samples always outnumber channels.
        if array.shape[0] < array.shape[1]:
            array = array.T
    else:
        raise AudioError(f"Array samples must be [T] or [T, C], got shape {array.shape}.")
    check_rate_and_channels(rate, array.shape[1], "<array>")
    return np.ascontiguousarray(array, dtype=np.float32), rate


def _finish(
    samples: np.ndarray, rate: int, name: str, sample_rate: int, max_seconds: float
) -> Audio:
    """Check content and length, average channels, resample. ``samples``: ``[T, C]`` or ``[T]``."""
    if samples.ndim == 1:
        samples = samples[:, None]
    frames, channels = samples.shape
    if samples.size == 0:
        raise AudioError(f"{name}: the audio contains no samples; upload a non-empty recording.")
    if not np.isfinite(samples).all():
        raise not_finite(name)
    check_duration(frames, rate, name, max_seconds)
    # Mean over channels in float32, as the reference does (torch .mean(dim=1) on float32).
    mono = torch.from_numpy(np.ascontiguousarray(samples)).mean(dim=1)
    if rate != sample_rate:
        import torchaudio.functional as taf

        mono = taf.resample(mono, rate, sample_rate)
    return _checked(mono, frames, rate, channels, name, sample_rate, max_seconds)


def _checked(
    mono: torch.Tensor,
    frames: int,
    rate: int,
    channels: int,
    name: str,
    sample_rate: int,
    max_seconds: float,
) -> Audio:
    """The checked :class:`Audio` of a ``[T]`` waveform at ``sample_rate``."""
    if frames == 0:
        raise AudioError(f"{name}: the audio contains no samples; upload a non-empty recording.")
    check_duration(frames, rate, name, max_seconds)
    warnings = []
    peak = float(mono.abs().max())
    if peak < SILENCE_PEAK:
        warnings.append(
            f"The audio is silent (peak {peak:.1e} of full scale); its scores are not meaningful."
        )
    return Audio(
        waveform=mono.contiguous(),
        sample_rate=sample_rate,
        source=name,
        original_sample_rate=rate,
        original_channels=channels,
        warnings=warnings,
    )


#: The public face of audio loading (the limits and the error live in :mod:`apex.audio_checks`).
__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MAX_SECONDS",
    "MIN_SAMPLE_RATE",
    "MIN_SECONDS",
    "SAMPLE_RATE",
    "SUPPORTED_EXTENSIONS",
    "Audio",
    "AudioError",
    "load_audio",
]

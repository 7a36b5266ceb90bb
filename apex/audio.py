"""Audio loading: any file, bytes or array in, a mono float32 waveform at the encoder's rate out,
channels averaged and resampled as the APEX reference does (big files block by block). Every
problem raises :class:`AudioError` saying what to do; silence is only noted in ``warnings``."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

if TYPE_CHECKING:
    import torch


class AudioError(ValueError):
    """The input is not usable audio; the message says what is wrong and what to do."""


SAMPLE_RATE = 24_000  # MERT's input rate, Hz: every encoder here consumes audio at this rate
MIN_SECONDS = 1.0  # shorter clips give too few encoder frames to mean anything
MAX_SECONDS = 600.0  # default longest input, seconds; callers raise it via ``max_seconds``
MIN_SAMPLE_RATE = 1_000  # rates outside [1 kHz, 384 kHz] are corrupt headers or mistakes
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 32
#: Decoding budget (CPU time): input samples, all channels, per second of ``max_seconds``. A
#: 10-minute 192 kHz stereo master fits; 384 kHz x 8 channels x 150 s (a 500 KB FLAC) does not.
MAX_DECODED_SAMPLES_PER_S = 2 * 192_000
ABSURD_SECONDS = 7 * 24 * 3600.0  # a header claiming over a week of audio is damaged
#: Files of at most this many input samples (64 MB as float32) are decoded and resampled in one
#: call, exactly as the reference does; bigger ones this many samples per block at a time.
WHOLE_DECODE_SAMPLES = 1 << 24
BLOCK_SAMPLES = 1 << 21
SILENCE_PEAK = 1e-4  # peak (full scale = 1.0) below which a clip is flagged silent, ~-80 dBFS
_UNKNOWN_FRAMES = 2**63 - 1  # what libsndfile reports when the header gives no length
SUPPORTED_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64"}
)
CONVERT_HINT = "convert it to WAV, FLAC, OGG or MP3 first (e.g. `ffmpeg -i input.m4a output.wav`)"
EMPTY = "the file is empty (0 bytes); upload the complete audio file."


def check_header(frames: int, rate: int, channels: int, name: str, max_seconds: float) -> None:
    """Refuse, from the header alone, lengths that are lies and files too costly to decode."""
    if frames >= _UNKNOWN_FRAMES or frames / rate > ABSURD_SECONDS:
        raise AudioError(
            f"{name}: the file is damaged: its header gives no usable length (it claims "
            f"{'an unknown number of' if frames >= _UNKNOWN_FRAMES else frames} samples). "
            "Re-export or re-upload the complete file."
        )
    if frames / rate > max_seconds * 1.01 + 1:
        raise too_long(frames / rate, max_seconds, name)
    budget = max_seconds * MAX_DECODED_SAMPLES_PER_S
    if frames * channels > budget:
        raise AudioError(
            f"{name}: decoding this file means {frames * channels / 1e6:.0f} million samples "
            f"({rate} Hz x {channels} channels x {frames / rate:.1f} s), more than the "
            f"{budget / 1e6:.0f} million this server decodes per song. Export a stereo mix at "
            "48 kHz (e.g. `ffmpeg -i in.flac -ac 2 -ar 48000 out.flac`) and upload that."
        )


def check_riff_complete(handle: BinaryIO, name: str) -> None:
    """Reject a WAV whose ``data`` chunk is shorter than its header says (an interrupted copy,
    which libsndfile would silently decode). Reads chunk headers, then rewinds."""
    start = handle.tell()
    size = handle.seek(0, io.SEEK_END) - start
    handle.seek(start)
    try:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            handle.seek(start + offset)
            chunk = handle.read(8)
            chunk_id, length = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mean "length unknown" (streaming writers); nothing to check.
                if 0 < length < 0xFFFFFFFF and offset + 8 + length > size:
                    raise AudioError(
                        f"{name}: the WAV file is truncated (its header declares {length} bytes "
                        f"of audio but only {size - offset - 8} are present); re-export or "
                        "re-upload the complete file."
                    )
                return
            offset += 8 + length + (length & 1)
    finally:
        handle.seek(start)


def check_rate_and_channels(rate: int, channels: int, name: str) -> None:
    """Refuse a sample rate or channel count no music recording has."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: sample rate {rate} Hz is outside the accepted {MIN_SAMPLE_RATE}-"
            f"{MAX_SAMPLE_RATE} Hz; the header is probably wrong, or the rate was passed in the "
            "wrong unit. Pass the true rate in Hz (e.g. 44100)."
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(
            f"{name}: {channels} channels is not a music recording (accepted: 1-{MAX_CHANNELS}); "
            "for an array, pass [T] or [T, C] samples; for a file, export a stereo or mono mix."
        )


def too_long(seconds: float, max_seconds: float, name: str) -> AudioError:
    """The error for a clip of ``seconds`` over the ``max_seconds`` limit."""
    return AudioError(
        f"{name}: {seconds:.1f} s is longer than the {max_seconds:.0f} s limit; trim it (e.g. "
        f"`ffmpeg -i in.wav -t {max_seconds:.0f} out.wav`) or raise the limit (APEX_MAX_AUDIO_S)."
    )


def check_finite(samples: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite samples."""
    if not np.isfinite(samples).all():
        raise AudioError(
            f"{name}: the audio contains NaN or infinite samples; the file or array is corrupted "
            "(re-export it, or check the code that produced the array)."
        )


def check_duration(frames: int, rate: int, name: str, max_seconds: float) -> None:
    """Refuse an empty clip, one shorter than :data:`MIN_SECONDS` or longer than ``max_seconds``."""
    if frames == 0:
        raise AudioError(f"{name}: the audio contains no samples; upload a non-empty recording.")
    seconds = frames / rate
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"{name}: {seconds:.2f} s is too short; APEX needs at least {MIN_SECONDS:.0f} s of "
            "audio (record or upload a longer clip)."
        )
    if seconds > max_seconds:
        raise too_long(seconds, max_seconds, name)


AudioInput = str | Path | bytes | tuple[np.ndarray, int]


@dataclass
class Audio:
    """A decoded clip: ``waveform`` ``[T]`` float32 in [-1, 1] (not clipped) at ``sample_rate``
    Hz; ``name`` (the file's, ``"<bytes>"`` or ``"<array>"``); the input's rate and channels;
    ``warnings`` about usable-but-odd input (e.g. silence)."""

    waveform: torch.Tensor
    sample_rate: int
    name: str
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
        digest = hashlib.sha256(struct.pack("<I", self.sample_rate))
        digest.update(self.waveform.detach().float().contiguous().cpu().numpy().tobytes())
        return digest.hexdigest()


def load_audio(
    audio: AudioInput | Audio, *, sample_rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS
) -> Audio:
    """A file path, its bytes, a ``(samples, rate)`` pair (``[T]``, ``[T, C]`` or ``[C, T]``: the
    smaller axis is channels) or an :class:`Audio` as a mono float32 waveform at ``sample_rate``
    Hz. :class:`AudioError` for empty, truncated, undecodable, unsupported or non-finite input, a
    clip under ``MIN_SECONDS`` or over ``max_seconds``, or an absurd rate or channel count."""
    if isinstance(audio, Audio):
        if audio.sample_rate == sample_rate:
            return audio
        return _finish(
            audio.waveform.numpy(), audio.sample_rate, audio.name, sample_rate, max_seconds
        )
    if isinstance(audio, tuple):
        if len(audio) != 2:
            raise AudioError("An array input must be a (samples, sample_rate) pair.")
        samples, rate = _from_array(*audio)
        return _finish(samples, rate, "<array>", sample_rate, max_seconds)
    if isinstance(audio, bytes | bytearray | memoryview):
        data = bytes(audio)
        if not data:
            raise AudioError(f"<bytes>: {EMPTY}")
        return _decode(io.BytesIO(data), "<bytes>", sample_rate, max_seconds)
    if isinstance(audio, str | Path):
        path = Path(audio)
        if not path.exists():
            raise AudioError(f"{path}: no such file; check the path.")
        if path.is_dir():
            raise AudioError(f"{path} is a directory; pass an audio file.")
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise AudioError(
                f"{path.name}: unsupported format {path.suffix or '(no extension)'!r}; supported: "
                f"{', '.join(sorted(SUPPORTED_EXTENSIONS))}. Please {CONVERT_HINT}."
            )
        if path.stat().st_size == 0:
            raise AudioError(f"{path.name}: {EMPTY}")
        with path.open("rb") as handle:
            return _decode(handle, path.name, sample_rate, max_seconds)
    raise AudioError(
        f"Cannot load audio from a {type(audio).__name__}; pass a file path, the file's "
        "bytes, or a (numpy array, sample_rate) pair."
    )


def _decode(
    handle: BinaryIO,
    name: str,
    sample_rate: int,
    max_seconds: float,
    *,
    whole_samples: int = WHOLE_DECODE_SAMPLES,
    block_samples: int = BLOCK_SAMPLES,
) -> Audio:
    """Decode an open file; at most ``whole_samples`` samples (all channels) are read whole,
    bigger files in blocks of about ``block_samples`` (memory: a few blocks plus the output)."""
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
    check_duration(read, rate, name, max_seconds)
    return _audio(mono, rate, channels, name, sample_rate)


def _read_blocks(
    sound: object, name: str, sample_rate: int, max_seconds: float, block_samples: int
) -> tuple[torch.Tensor, int]:
    """Down-mix and resample block by block; returns the ``[T]`` output and the frames read."""
    import torch

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
        check_finite(block, name)
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
    elif array.ndim == 2 and array.shape[0] < array.shape[1]:
        array = array.T  # the smaller axis is channels: at >= 1 s, samples outnumber channels
    elif array.ndim != 2:
        raise AudioError(f"Array samples must be [T] or [T, C], got shape {array.shape}.")
    check_rate_and_channels(rate, array.shape[1], "<array>")
    return np.ascontiguousarray(array, dtype=np.float32), rate


def _finish(
    samples: np.ndarray, rate: int, name: str, sample_rate: int, max_seconds: float
) -> Audio:
    """Check content and length, average channels, resample. ``samples``: ``[T, C]`` or ``[T]``."""
    import torch

    if samples.ndim == 1:
        samples = samples[:, None]
    frames, channels = samples.shape
    check_finite(samples, name)
    check_duration(frames, rate, name, max_seconds)
    # Mean over channels in float32, as the reference does (torch .mean(dim=1) on float32).
    mono = torch.from_numpy(np.ascontiguousarray(samples)).mean(dim=1)
    if rate != sample_rate:
        import torchaudio.functional as taf

        mono = taf.resample(mono, rate, sample_rate)
    return _audio(mono, rate, channels, name, sample_rate)


def _audio(mono: torch.Tensor, rate: int, channels: int, name: str, sample_rate: int) -> Audio:
    """The :class:`Audio` of a checked ``[T]`` waveform at ``sample_rate``, silence noted."""
    warnings = []
    peak = float(mono.abs().max())
    if peak < SILENCE_PEAK:
        warnings.append(
            f"The audio is silent (peak {peak:.1e} of full scale); its scores are not meaningful."
        )
    return Audio(
        waveform=mono.contiguous(),
        sample_rate=sample_rate,
        name=name,
        original_sample_rate=rate,
        original_channels=channels,
        warnings=warnings,
    )

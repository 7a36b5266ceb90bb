"""What audio input is accepted: the limits, the formats, and the checks that refuse the rest.

Every refusal is an :class:`AudioError` whose message says what was wrong and what to do about
it. :mod:`apex.audio` runs these checks before decoding (the file, the header's claims) and after
(content, duration).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import BinaryIO


class AudioError(ValueError):
    """The input is not usable audio; the message says what is wrong and what to do."""


MIN_SECONDS = 1.0
"""Shortest accepted input, seconds: shorter clips give too few encoder frames to mean anything."""
MAX_SECONDS = 600.0
"""Default longest accepted input, seconds (10 min); callers can raise it via ``max_seconds``."""
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
"""Rates outside [1 kHz, 384 kHz] are not music recordings but corrupt headers or mistakes."""
MAX_CHANNELS = 32
MAX_DECODED_SAMPLES_PER_S = 2 * 192_000
"""Decoding budget: input samples (all channels) per second of ``max_seconds``. Refused before
decoding when a file needs more: a 10-minute 192 kHz stereo master fits, 384 kHz x 8 channels x
150 s (a 500 KB FLAC of silence) does not. It bounds the CPU time a file can cost; memory is
bounded separately by decoding block by block."""
ABSURD_SECONDS = 7 * 24 * 3600.0
"""A header claiming more than a week of audio is not a long song but a damaged file."""
_UNKNOWN_FRAMES = 2**63 - 1  # what libsndfile reports when the header gives no length
SUPPORTED_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64"}
)
CONVERT_HINT = "convert it to WAV, FLAC, OGG or MP3 first (e.g. `ffmpeg -i input.m4a output.wav`)"

EMPTY = "the file is empty (0 bytes); upload the complete audio file."


def check_file(path: Path) -> None:
    """Refuse a path that is missing, a folder, of an unsupported format or empty."""
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
    """Reject a WAV whose ``data`` chunk is shorter than its header says (an interrupted copy).

    libsndfile silently reads what is there, so a half-uploaded WAV would be scored as a shorter
    song; the header's declared length is the only evidence of truncation. Reads chunk headers
    only, then rewinds ``handle``.
    """
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


def not_finite(name: str) -> AudioError:
    """The error for NaN or infinite samples."""
    return AudioError(
        f"{name}: the audio contains NaN or infinite samples; the file or array is corrupted "
        "(re-export it, or check the code that produced the array)."
    )


def check_duration(frames: int, rate: int, name: str, max_seconds: float) -> None:
    """Refuse a clip shorter than :data:`MIN_SECONDS` or longer than ``max_seconds``."""
    seconds = frames / rate
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"{name}: {seconds:.2f} s is too short; APEX needs at least {MIN_SECONDS:.0f} s of "
            "audio (record or upload a longer clip)."
        )
    if seconds > max_seconds:
        raise too_long(seconds, max_seconds, name)

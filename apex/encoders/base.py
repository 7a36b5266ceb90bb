"""The encoder interface: audio in, per-segment, per-layer pooled embeddings out."""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from apex.audio import Audio

SEGMENT_SECONDS = 30.0
"""Segment length of the APEX reference, seconds: non-overlapping, the last one zero-padded."""


class EncoderUnavailable(RuntimeError):
    """An encoder's weights cannot be had (offline, missing files); the message says what to do."""


@dataclass
class Embedding:
    """Pooled encoder output for one clip (float32 tensors)."""

    layers: torch.Tensor  # [S, L, D] per segment and layer, the mean over frames of real audio
    layers_padded: torch.Tensor  # [S, L, D] the reference's mean over the zero-padded segment
    seconds: torch.Tensor  # [S] seconds of real audio in each segment
    encoder_id: str  # the encoder (and settings) that produced it

    @property
    def mask(self) -> torch.Tensor:
        """``[S]`` bool: the segment contains audio."""
        return self.seconds > 0


class Encoder(abc.ABC):
    """Turns an :class:`Audio` clip at ``sample_rate`` Hz into an :class:`Embedding` with
    ``num_layers`` x ``dim`` (L x D) per ``segment_seconds`` segment. ``encoder_id`` names the
    weights (e.g. ``"m-a-p/MERT-v1-95M"``); ``is_fallback`` marks the built-in descriptors."""

    encoder_id: str
    sample_rate: int
    num_layers: int
    dim: int
    segment_seconds: float = SEGMENT_SECONDS
    is_fallback: bool = False

    @abc.abstractmethod
    def settings_key(self) -> str:
        """Everything besides the weights that changes the output (precision, segment length)."""

    # A subclass overrides encode or encode_batch (MERT's segments share forward passes).
    def encode(self, audio: Audio) -> Embedding:
        """Embed one clip at ``self.sample_rate``: ``[S, L, D]`` for S = ceil(duration / 30 s)."""
        return self.encode_batch([audio])[0]

    def encode_batch(self, audios: Sequence[Audio]) -> list[Embedding]:
        """One :class:`Embedding` per clip in order, as ``encode`` gives."""
        return [self.encode(audio) for audio in audios]

    def _check_rate(self, audio: Audio) -> None:
        if audio.sample_rate != self.sample_rate:
            raise ValueError(
                f"{type(self).__name__} needs audio at {self.sample_rate} Hz, got "
                f"{audio.sample_rate} Hz; load it with load_audio(..., sample_rate="
                f"{self.sample_rate})."
            )


def split_segments(
    waveform: torch.Tensor, segment_samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``[T]`` samples into ``segments`` ``[S, segment_samples]``, the last zero-padded (as
    the reference), and ``valid`` ``[S]`` int64 real samples each; ``S = max(1, ceil(T / n))``."""
    total = int(waveform.shape[-1])
    count = max(1, math.ceil(total / segment_samples))
    padded = torch.nn.functional.pad(waveform, (0, count * segment_samples - total))
    starts = torch.arange(count, dtype=torch.int64) * segment_samples
    valid = (total - starts).clamp(min=0, max=segment_samples)
    return padded.view(count, segment_samples), valid

"""The fallback encoder: 176 music descriptors per 30 s segment, no weights (the demo heads' input).

Deterministic float32 from one STFT (2048-point Hann, hop 256 = 10.7 ms at 24 kHz) of each
segment's real samples; ``layers == layers_padded``, ``L = 1``. Units: :mod:`.descriptors`."""

from __future__ import annotations

import torch

from apex.audio import SAMPLE_RATE, Audio
from apex.encoders import descriptors as d
from apex.encoders.base import SEGMENT_SECONDS, Embedding, Encoder, split_segments

_VERSION = 2  # bump whenever a descriptor changes: cached embeddings and demo heads then rebuild


def _names() -> tuple[str, ...]:
    names = [f"logmel{i}_{s}" for s in ("mean", "std") for i in range(d.N_MELS)]
    names += [f"mfcc{i}_{s}" for s in ("mean", "std") for i in range(d.N_MFCC)]
    names += [f"chroma_sorted{i}" for i in range(12)]
    names += ["key_clarity", "chroma_entropy", "chroma_frame_entropy", "chroma_top3"]
    names += [f"contrast{i}_{s}" for s in ("mean", "std") for i in range(7)]
    names += ["flatness_mean", "flatness_std", "flatness_hf", "centroid_mean", "centroid_std"]
    names += ["rolloff85_mean", "rolloff85_std", "rolloff95_mean", "bandwidth_mean"]
    names += ["energy_above_4k", "energy_above_8k", "zcr_mean", "zcr_std"]
    names += ["onset_mean", "onset_std", "onset_max", "tempo", "pulse_clarity"]
    names += ["tempo_instability", "onset_rate", "grid_coherence"]
    names += ["loudness_lufs", "rms_mean", "rms_std", "rms_p5", "rms_p95", "dynamic_range"]
    names += ["crest_factor", "clip_above_50", "clip_above_80", "clip_above_95", "log_kurtosis"]
    names += ["peak_dbfs", "quiet_re_median", "hf_noise_floor", "rms_p10"]
    names += ["repetition_chroma", "repetition_timbre", "chroma_similarity"]
    names += ["pitch_wobble_rms", "pitch_wobble_median", "pitch_steady_share"]
    return tuple(names)


FALLBACK_FEATURES: tuple[str, ...] = _names()
"""Name of every entry of the descriptor vector, in order."""
FALLBACK_DIM = len(FALLBACK_FEATURES)
"""D of the fallback encoder (176)."""


class FallbackEncoder(Encoder):
    """Descriptor vector per 30 s segment: ``[S, 1, FALLBACK_DIM]``; no weights, deterministic."""

    encoder_id = "fallback"
    sample_rate = SAMPLE_RATE
    num_layers = 1
    dim = FALLBACK_DIM
    segment_seconds = SEGMENT_SECONDS
    is_fallback = True

    def __init__(self) -> None:
        self._banks = d.Banks.build(self.sample_rate)

    def settings_key(self) -> str:
        """Descriptor version and segment length."""
        return f"fallback-v{_VERSION}|seg{self.segment_seconds:g}s"

    def encode(self, audio: Audio) -> Embedding:
        """Describe each 30 s segment of ``audio`` (its real samples only)."""
        self._check_rate(audio)
        segment_samples = round(self.segment_seconds * self.sample_rate)
        segments, valid = split_segments(audio.waveform.to(torch.float32), segment_samples)
        vectors = [
            describe(segment[: max(int(n), 1)], self._banks)
            for segment, n in zip(segments, valid, strict=True)
        ]
        layers = torch.stack(vectors)[:, None, :]
        return Embedding(
            layers=layers,
            layers_padded=layers.clone(),
            seconds=valid.to(torch.float32) / self.sample_rate,
            encoder_id=self.encoder_id,
        )


@torch.inference_mode()
def describe(wave: torch.Tensor, banks: d.Banks | None = None) -> torch.Tensor:
    """``[FALLBACK_DIM]`` float32 (named by :data:`FALLBACK_FEATURES`) of ``wave`` ``[T]`` at
    24 kHz, on one intra-op thread; ``banks`` is built when not given."""
    banks = banks or d.Banks.build(SAMPLE_RATE)
    # For ops under 1 ms, OpenMP's barriers make 2 threads several times slower on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return d.vector(wave.to(torch.float32).contiguous(), banks)
    finally:
        torch.set_num_threads(threads)

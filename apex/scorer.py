"""The scorer: audio in, the seven APEX scores (with a timeline, percentiles, uncertainty) out.
Concurrent calls share encoder forwards (:mod:`apex.batching`); decoding and heads run in the
caller's thread."""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from apex.audio import Audio, load_audio
from apex.batching import EncodeBatcher, on_zero_gpu
from apex.checkpoints import ModelInfo
from apex.encoders.base import SEGMENT_SECONDS, Embedding, Encoder
from apex.heads import LINK_WEIGHTS, logistic_preference
from apex.tasks import ENGAGEMENT

#: Shown in results and by the CLI whenever the offline demo model answers.
DEMO_NOTICE = (
    "Demo model: these scores come from heads trained on the synthetic demo corpus with the "
    "built-in fallback encoder, not from the published APEX model. They illustrate the product "
    "and say nothing reliable about real songs."
)


@dataclass
class ScoreResult:
    """Scores of one input.

    Attributes:
        scores: score name -> value on its scale (0-100 engagement, 1-5 aesthetics); the seven
            names, or the two engagement ones of a ``popularity``-only reference checkpoint.
        uncertainty: score name -> predicted standard deviation, score units (may be empty).
        percentiles: engagement score name -> percentile (0-100) within the model's stored
            reference distribution (empty when it stores none).
        preference: the preference logit, or None (no such output, or not trained on votes).
        segments: per 30 s segment with audio: ``start_s``, ``end_s`` and its scores.
        model_revision, encoder_revision: Hub commits (None for local files, built-in encoder).
        warnings: notes for people (silent audio, demo model, encoder mismatch...).
        name: the file's name, ``"<bytes>"``, ``"<array>"`` or ``"<embedding>"``.
    """

    scores: dict[str, float]
    uncertainty: dict[str, float] = field(default_factory=dict)
    percentiles: dict[str, float] = field(default_factory=dict)
    preference: float | None = None
    segments: list[dict[str, float]] = field(default_factory=list)
    duration_s: float = 0.0
    encoder_id: str = ""
    model_id: str = ""
    model_version: str = ""
    model_revision: str | None = None
    encoder_revision: str | None = None
    is_demo: bool = False
    warnings: list[str] = field(default_factory=list)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain floats, lists and dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreResult:
        """Inverse of :meth:`to_dict` (unknown keys ignored); ``KeyError`` without ``scores``."""
        if "scores" not in data:
            raise KeyError("a ScoreResult dict needs 'scores'")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def percentile_of(value: float, reference: Sequence[float]) -> float:
    """Percent of ``reference`` (sorted) below ``value``, ties counted half (mid-rank), 0-100."""
    below = bisect.bisect_left(reference, value)
    equal = bisect.bisect_right(reference, value) - below
    return 100.0 * (below + 0.5 * equal) / len(reference)


def _uncertainty(
    info: ModelInfo, song: Mapping[str, torch.Tensor], names: Sequence[str]
) -> dict[str, float]:
    """Std per score: ``<name>_std`` times the calibration's ``scale``, else its ``rmse``."""
    calibration = info.metadata.get("calibration") or {}
    out = {}
    for name in names:
        entry = calibration.get(name) or {}
        if f"{name}_std" in song:
            out[name] = float(song[f"{name}_std"][0]) * float(entry.get("scale", 1.0))
        elif "rmse" in entry:
            out[name] = float(entry["rmse"])
    return out


class Scorer:
    """Scores songs with one set of heads and one encoder; thread-safe; hot-swappable heads.

    Args:
        heads: :class:`~apex.heads.ReferenceHeads` or :class:`~apex.heads.ApexHeads`.
        encoder: None: only :meth:`score_embedding` works.
        device: where the heads run (``None``: CUDA when available, else CPU).
        notices: warnings added to every result (e.g. why the demo model answers).
        max_batch: most clips per shared ``encode_batch``; at least 4 on CUDA (on CPU batching
            gains little and multiplies activation memory).
        gather_s: how long a batch waits for more requests, seconds.
    """

    def __init__(
        self,
        heads: nn.Module,
        info: ModelInfo,
        encoder: Encoder | None = None,
        *,
        device: str | torch.device | None = None,
        max_audio_s: float = 600.0,
        notices: Iterable[str] = (),
        max_batch: int = 1,
        gather_s: float = 0.005,
    ) -> None:
        # On ZeroGPU the GPU exists only inside the encoder's @spaces.GPU calls: heads on CPU.
        gpu = torch.cuda.is_available() and not on_zero_gpu()
        self.device = torch.device(device or ("cuda" if gpu else "cpu"))
        self.encoder = encoder
        self.max_audio_s = max_audio_s
        self.notices = tuple(notices)
        on_gpu = getattr(getattr(encoder, "device", None), "type", self.device.type) == "cuda"
        self.max_batch = max(max_batch, 4 if on_gpu else 1)
        self._batcher = (
            EncodeBatcher(encoder, max_clips=self.max_batch, gather_s=gather_s) if encoder else None
        )
        self._state: tuple[nn.Module, ModelInfo] = (self._prepare(heads), info)

    def _prepare(self, heads: nn.Module) -> nn.Module:
        """Check that ``heads`` fit the encoder; return them in eval mode on the device."""
        if self.encoder is not None:
            enc_l, enc_d = self.encoder.num_layers, self.encoder.dim
            ok = (heads.num_layers, heads.dim) == (enc_l, enc_d)
            if getattr(heads, "uses_padded_pooling", False):  # reference: 13 x 768 only
                ok = (enc_l, enc_d) == (13, heads.dim)
            if not ok:
                raise ValueError(
                    f"heads expect {heads.num_layers} x {heads.dim} hidden states but encoder "
                    f"{self.encoder.encoder_id!r} gives {enc_l} x {enc_d}; pair the heads with "
                    "the encoder they were trained on."
                )
        # float64 on a private copy: it costs microseconds (float32 rounding moves a 0-100 score
        # by ~1e-5), and the caller's module (a trainer's) must not be converted in place.
        return copy.deepcopy(heads).to(device=self.device, dtype=torch.float64).eval()

    def swap(self, heads: nn.Module, info: ModelInfo) -> None:
        """Replace the heads atomically; calls in flight finish with the heads they started with.
        ``ValueError`` when the new heads do not fit the encoder (the old ones stay)."""
        self._state = (self._prepare(heads), info)  # one assignment: readers see old or new

    def info(self) -> dict[str, Any]:
        """Model id, version, kind, metrics and the encoder in use (for the About tab)."""
        heads, info = self._state
        return info.to_dict() | dict(
            trained_encoder_id=info.encoder_id,
            encoder_id=self.encoder.encoder_id if self.encoder else info.encoder_id,
            encoder_revision=getattr(self.encoder, "revision", None),
            encoder_is_fallback=bool(getattr(self.encoder, "is_fallback", False)),
            is_demo=info.is_demo,
            heads=type(heads).__name__,
            outputs=list(getattr(heads, "output_names", ())),
            device=str(self.device),
            notices=list(self.notices),
        )

    @property
    def encoder_batches(self) -> int:
        """Shared ``encode_batch`` calls made so far (concurrent requests share them)."""
        return self._batcher.batches if self._batcher is not None else 0

    def score(self, inputs: Any, *, priority: int = 0) -> list[ScoreResult]:
        """One :class:`ScoreResult` per input (paths, bytes, ``(array, rate)`` pairs or
        ``Audio``; a list or one), in order. ``priority``: lower goes first in the encoder queue
        (0: a person waits, 1: clips about to be heard, 2: background). :class:`AudioError` for
        the first input that is not usable audio (the message names it)."""
        if self.encoder is None:
            raise RuntimeError("this scorer has no encoder; use score_embedding()")
        rate, longest = self.encoder.sample_rate, self.max_audio_s
        single = isinstance(inputs, str | Path | bytes | bytearray | Audio) or (
            isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], np.ndarray)
        )
        items = [inputs] if single else list(inputs)
        audios = [load_audio(item, sample_rate=rate, max_seconds=longest) for item in items]
        embeddings = self._batcher.encode(audios, priority=priority)
        return [
            self.score_embedding(
                embedding, duration_s=audio.duration_s, name=audio.name, warnings=audio.warnings
            )
            for audio, embedding in zip(audios, embeddings, strict=True)
        ]

    def score_embedding(
        self,
        embedding: Embedding,
        *,
        duration_s: float | None = None,
        name: str = "<embedding>",
        warnings: Iterable[str] = (),
    ) -> ScoreResult:
        """Score an :class:`~apex.encoders.Embedding`: the song on all valid segments (each
        mixed, then averaged: the reference's order), the timeline on each segment alone."""
        heads, info = self._state  # read once: a concurrent swap cannot mix two models
        padded = getattr(heads, "uses_padded_pooling", False)
        layers = embedding.layers_padded if padded else embedding.layers
        mask = embedding.mask
        if not bool(mask.any()):
            raise ValueError("the embedding has no segment with audio; nothing to score")
        x = layers.unsqueeze(0).to(self.device, torch.float64)
        with torch.inference_mode():
            song = {k: v.cpu() for k, v in heads(x, mask.unsqueeze(0).to(self.device)).items()}
            per_segment = {k: v[0].cpu() for k, v in heads.segments(x).items()}
        names = tuple(heads.output_names)
        scores = {name: float(song[name][0]) for name in names}
        references = {n: info.reference_distribution(n) for n in ENGAGEMENT if n in scores}
        pref_trained = "preference" in song and info.metadata.get("preference_trained")
        notes = list(warnings) + list(self.notices)
        if info.is_demo and DEMO_NOTICE not in notes:
            notes.append(DEMO_NOTICE)
        if embedding.encoder_id != info.encoder_id and not info.is_demo:
            notes.append(
                f"Heads were trained on encoder {info.encoder_id!r} but this embedding comes "
                f"from {embedding.encoder_id!r}; scores may be off."
            )
        return ScoreResult(
            scores=scores,
            uncertainty=_uncertainty(info, song, names),
            percentiles={n: percentile_of(scores[n], r) for n, r in references.items() if r},
            preference=float(song["preference"][0]) if pref_trained else None,
            segments=self._timeline(embedding, per_segment, names),
            duration_s=float(embedding.seconds.sum() if duration_s is None else duration_s),
            encoder_id=embedding.encoder_id,
            model_id=info.model_id,
            model_version=info.version,
            model_revision=info.revision,
            encoder_revision=getattr(self.encoder, "revision", None),
            is_demo=info.is_demo,
            warnings=notes,
            name=name,
        )

    def _timeline(
        self, embedding: Embedding, per_segment: Mapping[str, torch.Tensor], names: Sequence[str]
    ) -> list[dict[str, float]]:
        seg_s = float(getattr(self.encoder, "segment_seconds", SEGMENT_SECONDS))
        return [
            {"start_s": s * seg_s, "end_s": s * seg_s + seconds}
            | {name: float(per_segment[name][s]) for name in names}
            for s, seconds in enumerate(embedding.seconds.tolist())
            if seconds > 0
        ]

    def compare(self, a: Any, b: Any) -> float:
        """P(listeners prefer ``a`` over ``b``) (inputs or :class:`ScoreResult`): with preference
        logits of one model ``sigmoid(pref_a - pref_b)``, else the logistic link on score
        differences (:data:`apex.heads.LINK_WEIGHTS`); ``compare(a, b) == 1 - compare(b, a)``."""
        ra = a if isinstance(a, ScoreResult) else self.score(a)[0]
        rb = b if isinstance(b, ScoreResult) else self.score(b)[0]
        same_model = (ra.model_id, ra.model_version) == (rb.model_id, rb.model_version)
        if ra.preference is not None and rb.preference is not None and same_model:
            return float(expit(ra.preference - rb.preference))
        return logistic_preference(ra.scores, rb.scores, LINK_WEIGHTS)

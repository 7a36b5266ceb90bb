"""The scorer: audio in, the seven APEX scores (with a timeline, percentiles, uncertainty) out.

``load_scorer()`` picks heads and an encoder; :class:`Scorer` runs them. Heads and their
:class:`~apex.checkpoints.ModelInfo` are held as one immutable ``(heads, info)`` tuple that
:meth:`Scorer.swap` replaces in a single reference assignment; every scoring call reads that
reference once, so a concurrent swap can never mix two models in one result. Encoder calls of
concurrent requests are pooled by :class:`~apex.batching.EncodeBatcher` into shared
``encode_batch`` forwards (requests arriving together run as one batch, in priority order);
decoding and the heads run in each caller's thread.
"""

from __future__ import annotations

import bisect
import copy
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from apex.audio import Audio, load_audio
from apex.batching import EncodeBatcher
from apex.checkpoints import (
    PUBLISHED_REPO,
    CheckpointError,
    ModelInfo,
    load_model,
)
from apex.encoders.base import SEGMENT_SECONDS, Embedding, Encoder, EncoderUnavailable
from apex.heads import LINK_WEIGHTS, logistic_preference
from apex.settings import Settings
from apex.tasks import ENGAGEMENT
from apex.training.registry import champion_of, registry_for

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
            names, or the two engagement scores for a ``popularity``-only reference checkpoint.
        uncertainty: score name -> predicted standard deviation in score units (empty when the
            model has no uncertainty output).
        percentiles: engagement score name -> percentile (0-100) of the value within the model's
            stored reference distribution (empty when the model stores none).
        preference: the model's preference utility logit, or None (no preference output, or
            one not trained on votes according to the model's metadata).
        segments: one dict per 30 s segment with audio: ``start_s``, ``end_s`` and its scores.
        duration_s: length of the input, seconds.
        encoder_id, model_id, model_version: who produced the scores.
        model_revision, encoder_revision: the Hub commits they were loaded from (None for
            local files and the built-in encoder).
        is_demo: True when the offline demo model answered.
        warnings: notes for people (silent audio, demo model, encoder mismatch...).
        source: file name, ``"<bytes>"``, ``"<array>"`` or ``"<embedding>"``.
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
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain floats, lists and dicts)."""
        return asdict(self)


def percentile_of(value: float, reference: Sequence[float]) -> float:
    """Percent of ``reference`` (sorted) below ``value``, ties counted half (mid-rank), 0-100."""
    below = bisect.bisect_left(reference, value)
    equal = bisect.bisect_right(reference, value) - below
    return 100.0 * (below + 0.5 * equal) / len(reference)


def _percentiles(info: ModelInfo, scores: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name in ENGAGEMENT:
        reference = info.reference_distribution(name)
        if name in scores and reference:
            out[name] = percentile_of(scores[name], reference)
    return out


def _uncertainty(
    info: ModelInfo, song: Mapping[str, torch.Tensor], names: Sequence[str]
) -> dict[str, float]:
    """Std per score: the model's ``<name>_std`` times its calibration ``scale`` (metadata
    ``calibration``, from :mod:`apex.training`), or the calibrated constant ``rmse`` for models
    without a std output; empty when neither exists."""
    calibration = info.metadata.get("calibration") or {}
    out = {}
    for name in names:
        entry = calibration.get(name) or {}
        if f"{name}_std" in song:
            out[name] = float(song[f"{name}_std"][0]) * float(entry.get("scale", 1.0))
        elif "rmse" in entry:
            out[name] = float(entry["rmse"])
    return out


def _preference(info: ModelInfo, song: Mapping[str, torch.Tensor]) -> float | None:
    """The preference logit, only when the heads' metadata says it was trained on votes (an
    untrained preference output would be noise)."""
    if "preference" in song and info.metadata.get("preference_trained"):
        return float(song["preference"][0])
    return None


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _is_single_input(inputs: Any) -> bool:
    if isinstance(inputs, str | Path | bytes | bytearray | Audio):
        return True
    return isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], np.ndarray)


class Scorer:
    """Scores songs with one set of heads and one encoder; thread-safe; hot-swappable heads.

    Args:
        heads: :class:`~apex.heads.ReferenceHeads` or :class:`~apex.heads.ApexHeads`.
        info: who the heads are (:class:`~apex.checkpoints.ModelInfo`).
        encoder: the encoder for audio inputs (None: only :meth:`score_embedding` works).
        device: where the heads run (``None``: CUDA when available, else CPU).
        max_audio_s: longest accepted input, seconds.
        notices: extra warnings added to every result (e.g. why the demo model answers).
        max_batch: most clips of concurrent requests encoded in one shared ``encode_batch``; at
            least 4 on CUDA. On CPU the default 1 keeps one 30 s segment per forward: batching
            gains the CPU little and multiplies the forward's activation memory.
        gather_s: how long a batch waits for more requests to join it, seconds.
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
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.encoder = encoder
        self.max_audio_s = max_audio_s
        self.notices = tuple(notices)
        #: Most clips one shared encoder batch takes (the pool's batches are no larger).
        self.max_batch = max(max_batch, 4 if self.device.type == "cuda" else 1)
        self._batcher = (
            EncodeBatcher(encoder, max_clips=self.max_batch, gather_s=gather_s) if encoder else None
        )
        self._swap_lock = threading.Lock()
        self._state: tuple[nn.Module, ModelInfo] = (self._prepare(heads), info)

    # ------------------------------------------------------------------ model management
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
        # The heads run in float64 on a private copy: they cost microseconds, float32 rounding
        # alone moves a 0-100 score by ~1e-5 (a few ulps), and the caller's module (e.g. a
        # trainer's) must not be converted in place.
        return copy.deepcopy(heads).to(device=self.device, dtype=torch.float64).eval()

    def swap(self, heads: nn.Module, info: ModelInfo) -> None:
        """Replace the heads atomically; calls in flight finish with the heads they started with.

        Raises:
            ValueError: the new heads do not fit this scorer's encoder (the old ones stay).
        """
        prepared = self._prepare(heads)
        with self._swap_lock:  # serialises swappers; readers never take it
            self._state = (prepared, info)

    def info(self) -> dict[str, Any]:
        """Model id, version, kind, metrics and the encoder in use (for the About tab)."""
        heads, info = self._state
        out = info.to_dict()
        out.update(
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
        return out

    # ------------------------------------------------------------------ scoring
    def _load(self, source: Any) -> Audio:
        if self.encoder is None:
            raise RuntimeError("this scorer has no encoder; use score_embedding()")
        return load_audio(
            source, sample_rate=self.encoder.sample_rate, max_seconds=self.max_audio_s
        )

    @property
    def encoder_batches(self) -> int:
        """Shared ``encode_batch`` calls made so far (concurrent requests share them)."""
        return self._batcher.batches if self._batcher is not None else 0

    def embed(self, source: Any, *, priority: int = 0) -> Embedding:
        """Encode one input (anything :func:`~apex.audio.load_audio` takes, or an ``Audio``)."""
        audio = self._load(source)
        return self._batcher.encode([audio], priority=priority)[0]

    def score(self, inputs: Any, *, priority: int = 0) -> list[ScoreResult]:
        """Score each input; one :class:`ScoreResult` per input, in order.

        Args:
            inputs: a list of inputs (paths, bytes, ``(array, rate)`` pairs or ``Audio``), or a
                single input.
            priority: place in the shared encoder queue; lower goes first (0: a person waits,
                1: clips about to be heard, 2: background scoring).

        Raises:
            AudioError: for the first input that is not usable audio (the message names it).
        """
        items = [inputs] if _is_single_input(inputs) else list(inputs)
        audios = [self._load(item) for item in items]
        embeddings = self._batcher.encode(audios, priority=priority) if audios else []
        return [
            self.score_embedding(
                embedding,
                duration_s=audio.duration_s,
                source=audio.source,
                warnings=audio.warnings,
            )
            for audio, embedding in zip(audios, embeddings, strict=True)
        ]

    def score_embedding(
        self,
        embedding: Embedding,
        *,
        duration_s: float | None = None,
        source: str = "<embedding>",
        warnings: Iterable[str] = (),
    ) -> ScoreResult:
        """Score an already-computed :class:`~apex.encoders.Embedding` (no audio needed).

        The song score runs the heads on all valid segments (mixing each, then averaging: the
        reference's order); the timeline runs them on each segment alone.
        """
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
            percentiles=_percentiles(info, scores),
            preference=_preference(info, song),
            segments=self._timeline(embedding, per_segment, names),
            duration_s=float(
                duration_s if duration_s is not None else embedding.seconds.sum().item()
            ),
            encoder_id=embedding.encoder_id,
            model_id=info.model_id,
            model_version=info.version,
            model_revision=info.revision,
            encoder_revision=getattr(self.encoder, "revision", None),
            is_demo=info.is_demo,
            warnings=notes,
            source=source,
        )

    def _timeline(
        self, embedding: Embedding, per_segment: Mapping[str, torch.Tensor], names: Sequence[str]
    ) -> list[dict[str, float]]:
        seg_s = float(getattr(self.encoder, "segment_seconds", SEGMENT_SECONDS))
        rows = []
        for s, seconds in enumerate(embedding.seconds.tolist()):
            if seconds <= 0:
                continue
            row = {"start_s": s * seg_s, "end_s": s * seg_s + float(seconds)}
            row.update({name: float(per_segment[name][s]) for name in names})
            rows.append(row)
        return rows

    def compare(self, a: Any, b: Any) -> float:
        """P(listeners prefer ``a`` over ``b``); ``a``/``b`` are inputs or :class:`ScoreResult`.

        With preference logits from the same model: ``sigmoid(pref_a - pref_b)`` (Bradley-Terry).
        Otherwise the logistic link on score differences with
        :data:`apex.heads.LINK_WEIGHTS`. Either way ``compare(a, b) == 1 - compare(b, a)``.
        """
        ra = a if isinstance(a, ScoreResult) else self.score(a)[0]
        rb = b if isinstance(b, ScoreResult) else self.score(b)[0]
        same_model = (ra.model_id, ra.model_version) == (rb.model_id, rb.model_version)
        if ra.preference is not None and rb.preference is not None and same_model:
            return _sigmoid(ra.preference - rb.preference)
        return logistic_preference(ra.scores, rb.scores, LINK_WEIGHTS)


# ---------------------------------------------------------------------------- construction
def _make_encoder(
    spec: str, precision: str, device: str | None, settings: Settings, local_only: bool
) -> Encoder:
    from apex.encoders import load_encoder

    return load_encoder(
        spec,
        precision=precision,
        device=device,
        trust_remote_code=settings.trust_remote_code,
        cache_dir=settings.cache_dir / "embeddings",
        local_files_only=local_only,
    )


def _published(
    encoder: str | None, precision: str, device: str | None, settings: Settings, local_only: bool
) -> tuple[nn.Module, ModelInfo, Encoder]:
    """The published heads (local cache first, the Hub only if not cached) and their MERT."""
    from apex.published import load_published

    published = load_published(PUBLISHED_REPO, local_files_only=local_only)
    spec = encoder or published.encoder_spec
    enc = _make_encoder(spec, precision, device, settings, local_only)
    return published.heads, published.info, enc


def _resolve_model(model: str, settings: Settings, local_only: bool) -> tuple[nn.Module, ModelInfo]:
    if model == "demo":
        from apex.demo.model import ensure_demo_model

        return load_model(ensure_demo_model(settings))
    return load_model(model, local_files_only=local_only)


def _champion_or_auto(settings: Settings) -> tuple[str, list[str]]:
    """``model="auto"``: the registry's champion directory when there is a loadable one, else
    ``"auto"`` (published, then demo), with a notice when a champion exists but cannot load."""
    champion = champion_of(settings)
    if champion is None:
        return "auto", []
    try:
        load_model(champion)
    except CheckpointError as err:
        return "auto", [f"The registry's champion {champion.name} cannot be loaded ({err})."]
    return str(champion), []


def load_scorer(
    model: str = "auto",
    encoder: str | None = None,
    device: str | None = None,
    precision: str = "fast",
    *,
    settings: Settings | None = None,
) -> Scorer:
    """Build a :class:`Scorer`.

    Args:
        model: ``"auto"`` (the model registry's champion, ``settings.models_dir/refits``, with
            the encoder it was trained on, when there is one; else the published APEX heads,
            ``amaai-lab/apex``, on MERT-v1-95M when both are in the local Hugging Face cache or
            downloadable; otherwise the offline demo model, and every result says so), or a
            pinned model: ``"demo"``, a local model directory, a reference ``.pt`` file, or a
            Hub repo id.
        encoder: ``None``/``"auto"`` for the encoder the heads were trained on, ``"fallback"``, a
            local HuBERT-shaped checkpoint directory, or a Hub id.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: encoder precision, ``"fast"`` (bf16 where supported) or ``"reference"`` (fp32).
        settings: data directories, cache and limits (default: :meth:`Settings.from_env`).

    Raises:
        CheckpointError: an explicitly named model cannot be loaded.
        EncoderUnavailable: an explicitly named encoder cannot be loaded.
        ValueError: the heads and the encoder do not fit together.
    """
    settings = settings or Settings.from_env()
    device = None if device in (None, "auto") else device
    encoder = None if encoder in (None, "auto") else encoder
    notices: list[str] = []
    # Every Hub lookup reads the local cache first (preload_from_hub) and probes the Hub only
    # on a cache miss (apex.hub_files), so a preloaded start-up makes no network round trip.
    local_only = False
    if model == "auto":
        model, notice = _champion_or_auto(settings)
        notices += notice
    if model == "auto":
        try:
            if encoder == "fallback":
                raise EncoderUnavailable("the published heads need MERT, not the fallback encoder")
            heads, info, enc = _published(encoder, precision, device, settings, local_only)
        except (CheckpointError, EncoderUnavailable) as err:
            notices.append(
                f"The published APEX model is not available here, so the offline demo model "
                f"answers. Reason: {err}"
            )
            model, encoder = "demo", None
    if model != "auto":
        heads, info = _resolve_model(model, settings, local_only)
        if info.kind != "published" and Path(model).parent == registry_for(settings).root:
            encoder = None  # a champion serves with the encoder it was trained on
        spec = encoder or str(info.metadata.get("encoder_spec", info.encoder_id))
        enc = _make_encoder(spec, precision, device, settings, local_only)
    if getattr(enc, "is_fallback", False):
        notices.append(
            "Fallback encoder: embeddings are built-in audio descriptors, not MERT; only heads "
            "trained on them (the demo model) give meaningful scores."
        )
    return Scorer(
        heads,
        info,
        enc,
        device=device,
        max_audio_s=settings.max_audio_s,
        notices=notices,
        max_batch=settings.score_concurrency,
    )

""":class:`RefitRequest` in, :class:`RefitOutcome` out: JSON between the app
(``annotation.refit_job``) and the refit process (:mod:`apex.training.worker`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apex.training.gate import Decision


class RefitError(RuntimeError):
    """A refit cannot run as asked (the serving model changed); the serving model keeps serving."""


@dataclass(frozen=True)
class ServingModel:
    """The model serving when the refit started: ``heads_from`` is a Hub repo id, a model directory
    or a ``.pt`` file; ``revision`` the Hub commit it was served at (checked on load)."""

    heads_from: str
    revision: str | None = None
    version: str = ""
    local_files_only: bool = True

    def load(self) -> tuple[Any, Any]:
        """``(heads, ModelInfo)``. Raises CheckpointError (it cannot be loaded, e.g. removed from
        the cache) or RefitError (the cache now holds another revision than the one serving)."""
        from apex.checkpoints import load_model

        heads, info = load_model(self.heads_from, local_files_only=self.local_files_only)
        if self.revision and info.revision and info.revision != self.revision:
            raise RefitError(
                f"the serving model {self.heads_from} is at revision {self.revision} but the cache "
                f"now holds {info.revision}; restart the app so both agree"
            )
        return heads, info


@dataclass(frozen=True)
class EncoderSpec:
    """The serving encoder: ``encoder_id`` and ``settings_key`` address the app's embedding cache
    (``cache_dir``); only a miss loads the encoder (``spec``; CPU, local files only)."""

    spec: str
    encoder_id: str
    settings_key: str
    cache_dir: str
    sample_rate: int = 24_000
    precision: str = "fast"
    trust_remote_code: bool = False
    max_audio_s: float = 600.0


@dataclass(frozen=True)
class PoolClip:
    """An arena clip: its id (votes name it), audio file and length in seconds."""

    clip_id: str
    path: str
    duration_s: float


@dataclass
class RefitRequest:
    """One refit: ``votes`` (Parquet file), ``engagement`` shards, human 1-5 ``ratings``;
    ``serving`` None: the registry's champion; ``encoder`` embeds the ``clips`` votes name (as
    ``pool`` rows); ``holdout``: latest share of votes for the gate; ``train`` overrides the
    data-scaled :class:`~apex.training.config.TrainConfig`; ``notes`` for people."""

    votes: str
    registry: str
    engagement: str | None = None
    ratings: str | None = None
    serving: ServingModel | None = None
    encoder: EncoderSpec | None = None
    clips: list[PoolClip] = field(default_factory=list)
    threads: int = 1
    nice: int = 10
    holdout: float = 0.2
    train: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = True
    kind: str = "custom"
    model_repo: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RefitRequest:
        raw = json.loads(text)
        raw["serving"] = ServingModel(**raw["serving"]) if raw.get("serving") else None
        raw["encoder"] = EncoderSpec(**raw["encoder"]) if raw.get("encoder") else None
        raw["clips"] = [PoolClip(**c) for c in raw.get("clips", [])]
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@dataclass
class RefitOutcome:
    """What a refit did: the ``version`` written (whatever the decision), held-out ``reports``
    (``challenger``, ``serving``), ``push`` and ``notes`` in words, each score's mean absolute
    ``drift`` on held-out songs, ``warm_start`` (``"serving v3"``, ``"random init"``...)."""

    version: Path
    decision: Decision
    reports: dict[str, dict] = field(default_factory=dict)
    push: str = ""
    notes: list[str] = field(default_factory=list)
    drift: dict[str, float] = field(default_factory=dict)
    warm_start: str = ""
    pool_rows: int = 0

    @property
    def note(self) -> str:
        """The notes as one sentence (for logs and the About tab)."""
        return "; ".join(self.notes)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "version": str(self.version)}, default=float)

    @classmethod
    def from_json(cls, text: str) -> RefitOutcome:
        from apex.training.gate import Decision

        raw = json.loads(text)
        raw["version"], raw["decision"] = Path(raw["version"]), Decision(**raw["decision"])
        return cls(**raw)

"""APEX: predict engagement and aesthetic scores of AI-generated songs from audio.

Public API::

    scorer = apex.load_scorer()            # published APEX if reachable, else the demo model
    result = scorer.score(["song.mp3"])[0]  # ScoreResult: seven scores, timeline, percentiles
    p = scorer.compare("a.wav", "b.wav")   # P(listeners prefer a over b)

Names that need torch are imported on first use, so ``import apex`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from apex.settings import Settings, SettingsError
from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES, SCORE_RANGES

if TYPE_CHECKING:
    from apex.audio import Audio, AudioError, load_audio
    from apex.checkpoints import CheckpointError, ModelInfo, load_model, save_model
    from apex.encoders import EncoderUnavailable
    from apex.heads import ApexHeads, HeadsConfig, ReferenceHeads
    from apex.loader import load_scorer
    from apex.scorer import Scorer, ScoreResult

#: Module -> the public names it defines (imported lazily by ``__getattr__``).
_LAZY = {
    name: module
    for module, names in {
        "apex.loader": ("load_scorer",),
        "apex.scorer": ("Scorer", "ScoreResult"),
        "apex.audio": ("load_audio", "Audio", "AudioError"),
        "apex.checkpoints": ("CheckpointError", "ModelInfo", "load_model", "save_model"),
        "apex.encoders": ("EncoderUnavailable",),
        "apex.heads": ("ApexHeads", "HeadsConfig", "ReferenceHeads"),
    }.items()
    for name in names
}

__all__ = [
    "AESTHETICS",
    "ENGAGEMENT",
    "SCORE_NAMES",
    "SCORE_RANGES",
    "ApexHeads",
    "Audio",
    "AudioError",
    "CheckpointError",
    "EncoderUnavailable",
    "HeadsConfig",
    "ModelInfo",
    "ReferenceHeads",
    "ScoreResult",
    "Scorer",
    "Settings",
    "SettingsError",
    "load_audio",
    "load_model",
    "load_scorer",
    "save_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'apex' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

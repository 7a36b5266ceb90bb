"""Training, evaluation and refit of APEX heads on engagement data and arena preferences.

Public API (everything else is private to its module); names load lazily, so importing this
package (or :mod:`apex.training.config` for the CLI's flags) does not import torch:

- config: :class:`TrainConfig`, :class:`GateConfig`.
- data: :class:`TargetTransform`, :func:`write_shard`, :func:`load_engagement`,
  :class:`EngagementData`.
- battles: :func:`battles_from_votes`, :func:`time_split`, :class:`Battles`.
- losses: :class:`UncertaintyWeighting`, :func:`bradley_terry_loss`, :func:`combine`.
- loop: :func:`train`, :class:`TrainResult`.
- evaluation (:mod:`apex.evaluation.metrics`, re-exported here): :func:`evaluate_model`,
  :func:`arena_protocol`, :func:`format_table`.
- refit: :class:`RefitConfig`, :func:`run_refit`; request: :class:`RefitRequest`,
  :class:`RefitOutcome`; gate: :func:`gate`, :class:`Decision`;
  saving: metadata, weights, model card, Hub push.
- registry: :class:`ModelRegistry`, :func:`registry_for`, :func:`champion_of` (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "TrainConfig": "config",
    "GateConfig": "config",
    "Battles": "battles",
    "DataError": "data",
    "EngagementData": "data",
    "TargetTransform": "data",
    "battles_from_votes": "battles",
    "load_engagement": "data",
    "time_split": "battles",
    "write_shard": "data",
    "UncertaintyWeighting": "losses",
    "bradley_terry_loss": "losses",
    "combine": "losses",
    "TrainResult": "loop",
    "train": "loop",
    "arena_protocol": "apex.evaluation.metrics",
    "evaluate_model": "apex.evaluation.metrics",
    "format_table": "apex.evaluation.metrics",
    "ModelRegistry": "registry",
    "champion_of": "registry",
    "registry_for": "registry",
    "RefitConfig": "refit",
    "RefitOutcome": "request",
    "RefitRequest": "request",
    "Decision": "gate",
    "gate": "gate",
    "run_refit": "refit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'apex.training' has no attribute {name!r}")
    module = _EXPORTS[name]
    if "." not in module:
        module = f"apex.training.{module}"
    return getattr(importlib.import_module(module), name)

"""Training, evaluation and refit of APEX heads on engagement data and arena preferences.

Public API (everything else is private to its module):

- data: :class:`TargetTransform`, :func:`write_shard`, :func:`load_engagement`,
  :class:`EngagementData`, :func:`battles_from_votes`, :func:`time_split`, :class:`Battles`.
- losses: :class:`UncertaintyWeighting`, :func:`bradley_terry_loss`, :func:`combine`.
- loop: :class:`TrainConfig`, :func:`train`, :class:`TrainResult`.
- evaluate: :func:`evaluate_model`, :func:`arena_protocol`, :func:`format_table`.
- refit: :class:`RefitConfig`, :class:`GateConfig`, :func:`gate`, :class:`ModelRegistry`,
  :func:`run_refit`.

Importing this package imports torch but does no work.
"""

from apex.training.data import (
    Battles,
    DataError,
    EngagementData,
    TargetTransform,
    battles_from_votes,
    load_engagement,
    time_split,
    write_shard,
)
from apex.training.evaluate import arena_protocol, evaluate_model, format_table
from apex.training.loop import TrainConfig, TrainResult, train
from apex.training.losses import UncertaintyWeighting, bradley_terry_loss, combine
from apex.training.refit import (
    GateConfig,
    ModelRegistry,
    RefitConfig,
    RefitOutcome,
    gate,
    run_refit,
)

__all__ = [
    "Battles",
    "DataError",
    "EngagementData",
    "GateConfig",
    "ModelRegistry",
    "RefitConfig",
    "RefitOutcome",
    "TargetTransform",
    "TrainConfig",
    "TrainResult",
    "UncertaintyWeighting",
    "arena_protocol",
    "battles_from_votes",
    "bradley_terry_loss",
    "combine",
    "evaluate_model",
    "format_table",
    "gate",
    "load_engagement",
    "run_refit",
    "time_split",
    "train",
    "write_shard",
]

"""Training and gate configuration, importable without torch (the CLI's flags mirror them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from apex.tasks import TASK_OUTPUTS

FAMILIES: tuple[str, ...] = ("apex", "reference")
LOSS_KINDS: tuple[str, ...] = ("equal", "weighted", "uncertainty")


@dataclass
class TrainConfig:
    """A training run, saved in the checkpoint's metadata. ``family``: ``apex`` (our heads) or
    ``reference`` (the published architecture); ``task``: ``popularity`` (streams, likes) or
    ``full`` (all seven scores); ``mode``: ``song`` (segments averaged) or ``segment`` (each a
    sample); ``loss``: how the per-task MSEs combine; ``shared``: trunk depth, 2 (512-256) or 3
    (512-384-256); ``pref_weight``: of the Bradley-Terry loss (0: off); same ``seed`` + data +
    device -> same model; ``bf16`` autocasts the forward pass only; ``anchor``: train only the
    preference output, the seven scores keep their weights exactly; ``hold_norm_stats``: keep
    BatchNorm on its running statistics (fine-tuning a served model)."""

    family: str = "apex"
    task: str = "full"
    mode: str = "song"
    loss: str = "uncertainty"
    shared: int = 2
    epochs: int = 50
    batch_size: int = 512
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    patience: int = 20
    pref_weight: float = 0.0
    dropout: float = 0.1
    seed: int = 42
    device: str = "auto"
    precision: str = "fp32"
    progress: bool = True
    anchor: bool = False
    hold_norm_stats: bool = False

    def __post_init__(self) -> None:
        checks = {
            "family": (self.family, FAMILIES),
            "task": (self.task, tuple(TASK_OUTPUTS)),
            "mode": (self.mode, ("song", "segment")),
            "loss": (self.loss, LOSS_KINDS),
            "shared": (self.shared, (2, 3)),
            "precision": (self.precision, ("fp32", "bf16")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.pref_weight < 0:
            raise ValueError(f"invalid optimisation settings: {asdict(self)}")

    @property
    def tasks(self) -> tuple[str, ...]:
        """Scores whose losses are trained."""
        return TASK_OUTPUTS[self.task]


@dataclass(frozen=True)
class GateConfig:
    """Promotion margins (pairwise accuracy 0-1, Spearman); the least held-out decisive battles."""

    accuracy_tolerance: float = 0.01
    spearman_tolerance: float = 0.02
    min_battles: int = 20


def scaled_train_config(
    n_train_songs: int,
    *,
    epochs: int = 0,
    batch_size: int = 0,
    lr: float = 0.0,
    patience: int = 0,
    **fields,
) -> TrainConfig:
    """The one :class:`TrainConfig` sized to ``n`` training songs (every demo model, the app's
    refits); a non-zero argument overrides its rule, ``fields`` set any other field.

    - ``batch_size``: the power of two nearest ``n / 8``, within 32-512;
    - ``epochs``: enough for ~1,500 optimiser steps, within 50-200;
    - ``lr``: ``2e-3 * sqrt(1000 / n)`` within 1e-4-2e-3 (the reference's 1e-4 at its scale);
    - ``patience``: a fifth of the epochs, at least 10.
    """
    n = max(1, int(n_train_songs))
    if batch_size <= 0:
        batch_size = int(min(512, max(32, 2 ** round(math.log2(max(n / 8, 1.0))))))
    if epochs <= 0:
        steps = max(1, math.ceil(n / batch_size))
        epochs = int(min(200, max(50, math.ceil(1500 / steps))))
    if lr <= 0:
        lr = float(min(2e-3, max(1e-4, 2e-3 * math.sqrt(1000 / n))))
    if patience <= 0:
        patience = max(10, epochs // 5)
    fields.setdefault("progress", False)
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, **fields)

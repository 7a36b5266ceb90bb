"""Configuration dataclasses of training and refit, importable without torch (the CLI's flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from apex.tasks import TASK_OUTPUTS

FAMILIES: tuple[str, ...] = ("apex", "reference")
LOSS_KINDS: tuple[str, ...] = ("equal", "weighted", "uncertainty")


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved in the checkpoint's metadata.

    Attributes:
        family: ``apex`` (our heads) or ``reference`` (the published architecture).
        task: ``popularity`` (streams, likes) or ``full`` (all seven scores) — which losses count.
        mode: ``song`` (segments averaged per song) or ``segment`` (each segment one sample).
        loss: ``equal``, ``weighted`` or ``uncertainty`` combination of the per-task MSEs.
        shared: depth of the shared trunk, 2 (512-256) or 3 (512-384-256).
        epochs, batch_size, lr, weight_decay, grad_clip, patience: optimisation (reference values).
        pref_weight: weight of the Bradley-Terry loss on battles (0 turns it off).
        dropout: ApexHeads dropout (the reference family has its own fixed dropouts).
        seed: seeds model init and batch order; same seed + data + device -> same model.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32`` or ``bf16`` (autocast of the forward pass; losses stay fp32). bf16
            halves step time on CPUs with AVX512-BF16/AMX and on recent GPUs.
        progress: show a tqdm bar over epochs.
        anchor: train only the preference output; the seven scores' paths (layer mix, trunk,
            score branches) keep their starting weights exactly (a refit without engagement data
            in the serving encoder's space, see :mod:`apex.training.warm`).
        hold_norm_stats: keep BatchNorm layers on their running statistics while training (a
            warm start fine-tunes the served normalisation instead of re-estimating it).
    """

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
    """Promotion rule: the challenger may be worse than the champion by at most these margins.

    Attributes:
        accuracy_tolerance: allowed drop in held-out pairwise accuracy (absolute, 0-1).
        spearman_tolerance: allowed drop in mean engagement Spearman on held-out songs.
        min_battles: fewer held-out decisive battles than this and accuracy is not trusted: the
            challenger is refused unless there is no champion.
    """

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
    """A :class:`TrainConfig` sized to the data; a non-zero argument overrides its rule.

    Rules (``n`` = training songs; early stopping always watches the validation split):

    - ``batch_size`` = the power of two nearest ``n / 8``, within 32-512 (about eight steps an
      epoch on small data; the paper's 512 at its scale);
    - ``epochs`` = enough for ~1,500 optimiser steps, within 50-200 (the paper's 50 at 211k songs);
    - ``lr`` = ``2e-3 * sqrt(1000 / n)`` within 1e-4-2e-3 (the reference's 1e-4 at its scale,
      larger steps where there are few);
    - ``patience`` = a fifth of the epochs, at least 10.

    Args:
        n_train_songs: songs in the ``train`` split (>= 1).
        fields: any other :class:`TrainConfig` field (``pref_weight``, ``seed``, ``device``...).
    """
    import math

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

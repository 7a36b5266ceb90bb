"""Training losses: per-task MSE combined three ways, Bradley-Terry on battles, Gaussian NLL.

- :func:`task_mse` — MSE of each score on its own scale (0-100 / 1-5, as the reference), ignoring
  unknown targets (NaN).
- :func:`combine` — ``equal`` (plain sum), ``weighted`` (the reference's fixed weights: 5 for each
  engagement score, 1 for each aesthetic) or ``uncertainty`` (:class:`UncertaintyWeighting`).
- :func:`bradley_terry_loss` — P(A beats B) = sigmoid(pref_A - pref_B), binary cross-entropy against
  1 / 0 / 0.5 (TIE). BOTH_BAD never reaches it (dropped when battles are built).
- :func:`gaussian_nll` — trains the per-score standard deviation of :class:`apex.heads.ApexHeads`
  with the mean detached, so uncertainty never pulls the point predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from apex.tasks import ENGAGEMENT, SCORE_NAMES, SCORE_RANGES
from apex.training.config import LOSS_KINDS

#: The reference's fixed loss weights for ``loss="weighted"``.
REFERENCE_WEIGHTS: dict[str, float] = {n: (5.0 if n in ENGAGEMENT else 1.0) for n in SCORE_NAMES}


def task_mse(
    outputs: Mapping[str, torch.Tensor], targets: torch.Tensor, tasks: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Mean squared error per task over the rows whose target is known.

    Args:
        outputs: model outputs, each ``[B]`` on the score's scale.
        targets: ``[B, 7]`` in :data:`SCORE_NAMES` order, NaN where unknown.
        tasks: which scores to score.

    Returns:
        ``{task: scalar}`` for the tasks with at least one known target in the batch (a task with
        none contributes nothing rather than a NaN).
    """
    losses: dict[str, torch.Tensor] = {}
    for task in tasks:
        column = targets[:, SCORE_NAMES.index(task)]
        known = ~torch.isnan(column)
        if known.any():
            losses[task] = F.mse_loss(outputs[task][known], column[known])
    return losses


class UncertaintyWeighting(nn.Module):
    """Learned homoscedastic weighting (Kendall et al.), parameterised as the reference does.

    ``total = sum_t exp(-2 s_t) / 2 * L_t + s_t`` with one learned ``s_t = log sigma_t`` per task,
    initialised at 0 (all weights 1/2).
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.log_sigma = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Combine ``{task: scalar}`` into one scalar (tasks absent from ``losses`` are skipped)."""
        total = self.log_sigma.new_zeros(())
        for i, task in enumerate(self.tasks):
            if task in losses:
                s = self.log_sigma[i]
                total = total + 0.5 * torch.exp(-2.0 * s) * losses[task] + s
        return total

    def weights(self) -> dict[str, float]:
        """Current effective weight ``1 / sigma^2`` per task (for logs and model cards)."""
        w = torch.exp(-2.0 * self.log_sigma.detach())
        return {t: float(v) for t, v in zip(self.tasks, w, strict=True)}


def combine(
    losses: Mapping[str, torch.Tensor], kind: str, uncertainty: UncertaintyWeighting | None = None
) -> torch.Tensor:
    """Combine per-task losses: ``equal``, ``weighted`` or ``uncertainty`` (needs the module)."""
    if not losses:
        raise ValueError("no task has a known target in this batch; check the data's targets")
    if kind == "equal":
        return torch.stack(list(losses.values())).sum()
    if kind == "weighted":
        return torch.stack([REFERENCE_WEIGHTS[t] * v for t, v in losses.items()]).sum()
    if kind == "uncertainty":
        if uncertainty is None:
            raise ValueError("loss='uncertainty' needs an UncertaintyWeighting module")
        return uncertainty(losses)
    raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")


def bradley_terry_loss(
    pref_a: torch.Tensor,
    pref_b: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of battle outcomes.

    Args:
        pref_a, pref_b: ``[P]`` preference logits (utilities) of the two clips.
        y: ``[P]`` target P(A beats B): 1 (A), 0 (B), 0.5 (TIE: half a win each way).
        weight: optional ``[P]`` per-battle weights.

    Returns:
        Mean (weighted) binary cross-entropy of ``sigmoid(pref_a - pref_b)`` against ``y``; swapping
        the clips and flipping ``y`` gives the same value because BCE(z, y) = BCE(-z, 1 - y).
    """
    return F.binary_cross_entropy_with_logits(pref_a - pref_b, y, weight=weight)


def gaussian_nll(
    outputs: Mapping[str, torch.Tensor], targets: torch.Tensor, tasks: Sequence[str]
) -> torch.Tensor | None:
    """Gaussian NLL of the targets under ``N(mean.detach(), std^2)``, on each score's 0-1 range.

    Rescaling to 0-1 keeps the engagement and aesthetic terms comparable. Returns None when the
    model has no ``<task>_std`` outputs or no target is known.
    """
    terms = []
    for task in tasks:
        std = outputs.get(f"{task}_std")
        if std is None:
            continue
        column = targets[:, SCORE_NAMES.index(task)]
        known = ~torch.isnan(column)
        if not known.any():
            continue
        low, high = SCORE_RANGES[task]
        resid = (column[known] - outputs[task][known].detach()) / (high - low)
        var = (std[known] / (high - low)).pow(2).clamp_min(1e-8)
        terms.append(0.5 * (torch.log(var) + resid.pow(2) / var).mean())
    return torch.stack(terms).sum() if terms else None

"""Training losses: per-task MSE combined three ways, Bradley-Terry on battles, Gaussian NLL."""

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
    """``{task: MSE}`` on each score's own scale over known targets (``outputs``: ``{score: [B]}``;
    ``targets``: ``[B, 7]`` in :data:`SCORE_NAMES` order, NaN = unknown); a task with no known
    target in the batch is left out rather than NaN."""
    losses: dict[str, torch.Tensor] = {}
    for task in tasks:
        column = targets[:, SCORE_NAMES.index(task)]
        known = ~torch.isnan(column)
        if known.any():
            losses[task] = F.mse_loss(outputs[task][known], column[known])
    return losses


class UncertaintyWeighting(nn.Module):
    """Learned homoscedastic weighting (Kendall et al.) as the reference parameterises it:
    ``total = sum_t exp(-2 s_t) / 2 * L_t + s_t``, ``s_t = log sigma_t`` starting at 0."""

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
    """Combine per-task losses: ``equal`` (sum), ``weighted`` (:data:`REFERENCE_WEIGHTS`) or
    ``uncertainty`` (needs the module)."""
    if kind == "equal":
        return torch.stack(list(losses.values())).sum()
    if kind == "weighted":
        return torch.stack([REFERENCE_WEIGHTS[t] * v for t, v in losses.items()]).sum()
    if kind == "uncertainty":
        if uncertainty is None:
            raise ValueError("loss='uncertainty' needs an UncertaintyWeighting module")
        return uncertainty(losses)
    raise ValueError(f"loss must be one of {LOSS_KINDS}, got {kind!r}")


def bradley_terry_loss(pref_a: torch.Tensor, pref_b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean BCE of ``sigmoid(pref_a - pref_b)`` (``[P]`` logits) against ``y`` ``[P]``:
    1 (A), 0 (B), 0.5 (TIE); symmetric under swapping the clips and flipping ``y``."""
    return F.binary_cross_entropy_with_logits(pref_a - pref_b, y)


def gaussian_nll(
    outputs: Mapping[str, torch.Tensor], targets: torch.Tensor, tasks: Sequence[str]
) -> torch.Tensor | None:
    """Gaussian NLL of the targets under ``N(mean.detach(), std^2)`` on each score's 0-1 range
    (the std never pulls the mean); None without ``<task>_std`` outputs or known targets."""
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

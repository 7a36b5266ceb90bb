"""Loss invariants: Bradley-Terry symmetry and ties, uncertainty weighting formula, masked MSE."""

from __future__ import annotations

import math

import pytest
import torch

from apex.tasks import SCORE_NAMES
from apex.training.losses import (
    REFERENCE_WEIGHTS,
    UncertaintyWeighting,
    bradley_terry_loss,
    combine,
    gaussian_nll,
    task_mse,
)


def test_swapping_clips_with_flipped_outcome_gives_same_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    pa, pb = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    y = torch.tensor([1.0, 0.0, 0.5, 1.0] * 8)
    forward = bradley_terry_loss(pa, pb, y)
    swapped = bradley_terry_loss(pb, pa, 1.0 - y)
    assert torch.allclose(forward, swapped)
    # and it is the textbook likelihood, written out independently
    p = 1.0 / (1.0 + torch.exp(-(pa - pb)))
    manual = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert torch.allclose(forward, manual, atol=1e-6)


def test_tie_gradient_is_symmetric_and_pulls_utilities_together() -> None:
    pa = torch.tensor([0.7], requires_grad=True)
    pb = torch.tensor([-0.4], requires_grad=True)
    bradley_terry_loss(pa, pb, torch.tensor([0.5])).backward()
    assert torch.allclose(pa.grad, -pb.grad)
    assert pa.grad.item() > 0  # descending lowers the leader, raises the other
    # at equal utilities a tie is the optimum: zero gradient
    qa = torch.tensor([0.3], requires_grad=True)
    qb = torch.tensor([0.3], requires_grad=True)
    bradley_terry_loss(qa, qb, torch.tensor([0.5])).backward()
    assert qa.grad.abs().item() < 1e-7 and qb.grad.abs().item() < 1e-7


def test_a_win_gradient_raises_the_winner() -> None:
    pa = torch.zeros(1, requires_grad=True)
    pb = torch.zeros(1, requires_grad=True)
    bradley_terry_loss(pa, pb, torch.ones(1)).backward()
    assert pa.grad.item() < 0 < pb.grad.item()


def test_uncertainty_weighting_matches_its_formula() -> None:
    module = UncertaintyWeighting(["score_streams", "coherence"])
    with torch.no_grad():
        module.log_sigma.copy_(torch.tensor([0.8, -0.3]))
    losses = {"score_streams": torch.tensor(120.0), "coherence": torch.tensor(0.4)}
    # L = sum_t L_t / (2 sigma_t^2) + log sigma_t, with sigma_t = e^{s_t}
    expected = sum(
        losses[t].item() / (2 * math.exp(s) ** 2) + s
        for t, s in (("score_streams", 0.8), ("coherence", -0.3))
    )
    assert combine(losses, "uncertainty", module).item() == pytest.approx(expected, rel=1e-6)
    assert module.weights()["score_streams"] == pytest.approx(math.exp(-1.6), rel=1e-6)


def test_uncertainty_weighting_learns_to_downweight_the_noisier_task() -> None:
    module = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        module({"a": torch.tensor(100.0), "b": torch.tensor(0.01)}).backward()
        opt.step()
    w = module.weights()
    # the optimum is sigma^2 = L: weight 1/L
    assert w["a"] == pytest.approx(1 / 100.0, rel=0.05)
    assert w["b"] > w["a"] * 100


def test_equal_and_weighted_combinations() -> None:
    losses = {"score_likes": torch.tensor(2.0), "clarity": torch.tensor(3.0)}
    assert combine(losses, "equal").item() == pytest.approx(5.0)
    expected = 2.0 * REFERENCE_WEIGHTS["score_likes"] + 3.0 * REFERENCE_WEIGHTS["clarity"]
    assert combine(losses, "weighted").item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="loss must be"):
        combine(losses, "median")
    with pytest.raises(ValueError, match="needs an UncertaintyWeighting"):
        combine(losses, "uncertainty")


def test_task_mse_ignores_unknown_targets() -> None:
    targets = torch.full((4, len(SCORE_NAMES)), float("nan"))
    targets[:2, 0] = torch.tensor([10.0, 20.0])
    outputs = {name: torch.zeros(4) for name in SCORE_NAMES}
    losses = task_mse(outputs, targets, SCORE_NAMES)
    assert set(losses) == {"score_streams"}
    assert losses["score_streams"].item() == pytest.approx(250.0)


def test_gaussian_nll_trains_std_not_mean() -> None:
    targets = torch.full((3, len(SCORE_NAMES)), float("nan"))
    targets[:, 2] = torch.tensor([2.0, 3.0, 4.0])
    mean = torch.full((3,), 3.0, requires_grad=True)
    std = torch.full((3,), 0.5, requires_grad=True)
    nll = gaussian_nll({"coherence": mean, "coherence_std": std}, targets, ["coherence"])
    nll.backward()
    assert mean.grad is None
    assert std.grad is not None and torch.isfinite(std.grad).all()
    assert gaussian_nll({"coherence": mean}, targets, ["coherence"]) is None

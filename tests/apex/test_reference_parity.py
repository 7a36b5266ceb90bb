"""Reference parity: published-format checkpoints scored through our stack match an independent
re-implementation of the reference forward pass, written here from the published description.

The description (AMAAI-Lab/apex ``inference.py``): per 30 s segment, hidden states 2, 5, 8 and 12
(of 13) mean-pooled over time are mixed by ``Conv1d(4, 1, 1)`` initialised right after
``torch.manual_seed(42)``; the mixed segment vectors are averaged; the MLP is a shared trunk
768-512-256 (or 768-512-384-256) of Linear-BatchNorm1d-GELU-Dropout blocks and one branch per task
256-128-64-1 (two such blocks then a Linear), squashed by sigmoid * 100 (engagement) or
sigmoid * 4 + 1 (aesthetics). Everything below uses plain tensor ops on the state dict only.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from apex.checkpoints import load_model, load_reference_checkpoint, reference_info
from apex.encoders.base import Embedding
from apex.scorer import Scorer
from apex.tasks import ENGAGEMENT, TASK_OUTPUTS

BN_EPS = 1e-5  # BatchNorm1d's default epsilon


def _linear(state: dict, prefix: str, fan_in: int, fan_out: int, gen: torch.Generator) -> None:
    state[f"{prefix}.weight"] = torch.randn(fan_out, fan_in, generator=gen) / math.sqrt(fan_in)
    state[f"{prefix}.bias"] = 0.1 * torch.randn(fan_out, generator=gen)


def _batchnorm(state: dict, prefix: str, width: int, gen: torch.Generator) -> None:
    state[f"{prefix}.weight"] = 1 + 0.2 * torch.randn(width, generator=gen)
    state[f"{prefix}.bias"] = 0.2 * torch.randn(width, generator=gen)
    state[f"{prefix}.running_mean"] = 0.3 * torch.randn(width, generator=gen)
    state[f"{prefix}.running_var"] = 0.5 + torch.rand(width, generator=gen)
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)


def _trunk_widths(shared: int) -> list[int]:
    return [768, 512, 256] if shared == 2 else [768, 512, 384, 256]


def random_reference_state(task: str, shared: int, seed: int) -> dict[str, torch.Tensor]:
    """A state dict with the published key names and random (non-saturating) values."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    widths = _trunk_widths(shared)
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        _linear(state, f"shared.{i}.block.0", a, b, gen)
        _batchnorm(state, f"shared.{i}.block.1", b, gen)
    for name in TASK_OUTPUTS[task]:
        for j, (a, b) in enumerate(((256, 128), (128, 64))):
            _linear(state, f"branch_{name}.branch.{j}.block.0", a, b, gen)
            _batchnorm(state, f"branch_{name}.branch.{j}.block.1", b, gen)
        _linear(state, f"branch_{name}.branch.2", 64, 1, gen)
    return state


def _block(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    x = x @ state[f"{prefix}.0.weight"].T + state[f"{prefix}.0.bias"]
    mean, var = state[f"{prefix}.1.running_mean"], state[f"{prefix}.1.running_var"]
    x = (x - mean) / torch.sqrt(var + BN_EPS) * state[f"{prefix}.1.weight"] + state[
        f"{prefix}.1.bias"
    ]
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))  # exact GELU; dropout is off at inference


def reference_forward(
    state: dict, task: str, shared: int, hidden: torch.Tensor
) -> dict[str, float]:
    """``hidden`` ``[S, 13, 768]`` (per-segment time means over padded segments) -> scores."""
    with torch.random.fork_rng():
        torch.manual_seed(42)
        mixer = nn.Conv1d(4, 1, kernel_size=1)
    # Float64 throughout: the "true" value of the reference computation, free of float32 rounding.
    mixer, hidden = mixer.double(), hidden.double()
    state = {k: v.double() for k, v in state.items()}
    mixed = [mixer(seg[[2, 5, 8, -1]].unsqueeze(0)).squeeze() for seg in hidden]  # each [768]
    x = torch.stack(mixed).mean(dim=0).unsqueeze(0).detach()
    for i in range(shared):
        x = _block(state, f"shared.{i}.block", x)
    out = {}
    for name in TASK_OUTPUTS[task]:
        h = _block(state, f"branch_{name}.branch.0.block", x)
        h = _block(state, f"branch_{name}.branch.1.block", h)
        logit = (
            h @ state[f"branch_{name}.branch.2.weight"].T + state[f"branch_{name}.branch.2.bias"]
        )
        scale, shift = (100.0, 0.0) if name in ENGAGEMENT else (4.0, 1.0)
        out[name] = float(torch.sigmoid(logit).squeeze() * scale + shift)
    return out


def _embedding(segments: int, seed: int) -> Embedding:
    gen = torch.Generator().manual_seed(seed)
    padded = torch.randn(segments, 13, 768, generator=gen)
    seconds = torch.full((segments,), 30.0)
    seconds[-1] = 12.5
    # `layers` (valid-frame pooling) differs on purpose: reference heads must read layers_padded.
    return Embedding(
        layers=padded + 1.0,
        layers_padded=padded,
        seconds=seconds,
        encoder_id="m-a-p/MERT-v1-95M",
    )


@pytest.mark.parametrize("task", ["popularity", "full"])
@pytest.mark.parametrize("shared", [2, 3])
@pytest.mark.parametrize("mode", ["song", "segment"])
def test_scorer_matches_independent_reference(
    tmp_path: Path, task: str, shared: int, mode: str
) -> None:
    state = random_reference_state(task, shared, seed=shared * 10 + len(task))
    path = tmp_path / "best_model.pt"
    checkpoint = {"model_state": state, "task": task, "shared": shared, "mode": mode}
    torch.save({**checkpoint, "epoch": 12, "val_loss": 0.5}, path)
    heads, info = load_model(path)
    scorer = Scorer(heads, info, encoder=None, device="cpu")
    spread = {name: [] for name in TASK_OUTPUTS[task]}
    for seed, segments in enumerate((1, 3, 7)):
        embedding = _embedding(segments, seed)
        want = reference_forward(state, task, shared, embedding.layers_padded)
        got = scorer.score_embedding(embedding)
        assert set(got.scores) == set(want)
        for name, value in want.items():
            assert got.scores[name] == pytest.approx(value, abs=1e-5), name
            spread[name].append(value)
        assert len(got.segments) == segments
        assert got.segments[-1]["end_s"] == pytest.approx(30.0 * (segments - 1) + 12.5)
    # The comparison means something only if the outputs are not pinned at a sigmoid bound.
    for name, values in spread.items():
        assert max(values) - min(values) > 1e-3, name


def test_timeline_matches_reference_on_each_segment(tmp_path: Path) -> None:
    state = random_reference_state("full", 2, seed=5)
    torch.save(
        {"model_state": state, "task": "full", "shared": 2, "mode": "segment"}, tmp_path / "m.pt"
    )
    heads = load_reference_checkpoint(tmp_path / "m.pt")
    scorer = Scorer(heads, reference_info(heads, str(tmp_path / "m.pt")), device="cpu")
    embedding = _embedding(4, seed=9)
    result = scorer.score_embedding(embedding)
    for s, row in enumerate(result.segments):
        want = reference_forward(state, "full", 2, embedding.layers_padded[s : s + 1])
        for name, value in want.items():
            assert row[name] == pytest.approx(value, abs=1e-5)

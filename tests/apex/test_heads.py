"""Heads: the reference layout and fixed layer mix, and our heads' shapes, ranges and invariants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from apex.heads import (
    LINK_WEIGHTS,
    REFERENCE_LAYER_MIX,
    REFERENCE_LAYERS,
    ApexHeads,
    HeadsConfig,
    ReferenceHeads,
    logistic_preference,
)
from apex.tasks import SCORE_NAMES, SCORE_RANGES, TASK_OUTPUTS


def _published_keys(task: str, shared: int) -> set[str]:
    """State-dict keys of the reference apexMLP, spelled out from its published structure."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = set()
    for i in range(shared):
        keys |= {f"shared.{i}.block.0.{p}" for p in ("weight", "bias")}
        keys |= {f"shared.{i}.block.1.{p}" for p in bn}
    for name in TASK_OUTPUTS[task]:
        for j in range(2):
            keys |= {f"branch_{name}.branch.{j}.block.0.{p}" for p in ("weight", "bias")}
            keys |= {f"branch_{name}.branch.{j}.block.1.{p}" for p in bn}
        keys |= {f"branch_{name}.branch.2.weight", f"branch_{name}.branch.2.bias"}
    return keys


def test_layer_mix_literals_match_seeded_conv() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(42)
        conv = nn.Conv1d(4, 1, 1)
    assert REFERENCE_LAYERS == (2, 5, 8, 12)
    assert torch.equal(torch.tensor(REFERENCE_LAYER_MIX["weight"]), conv.weight.detach().flatten())
    assert torch.equal(torch.tensor(REFERENCE_LAYER_MIX["bias"]), conv.bias.detach())


@pytest.mark.parametrize("task", ["popularity", "full"])
@pytest.mark.parametrize("shared", [2, 3])
def test_reference_state_dict_keys_are_the_published_ones(task: str, shared: int) -> None:
    heads = ReferenceHeads(task=task, shared=shared)
    assert set(heads.state_dict()) == _published_keys(task, shared)
    out = heads(torch.randn(3, 13, 768))
    assert set(out) == set(TASK_OUTPUTS[task])
    for name, value in out.items():
        low, high = SCORE_RANGES[name]
        assert value.shape == (3,)
        assert bool(((value >= low) & (value <= high)).all())


def test_reference_rejects_wrong_dims() -> None:
    with pytest.raises(ValueError, match="768"):
        ReferenceHeads()(torch.randn(2, 13, 64))
    with pytest.raises(ValueError, match="shared"):
        ReferenceHeads(shared=4)


def test_reference_selects_layers_and_masks_segments() -> None:
    heads = ReferenceHeads()
    layers = torch.randn(1, 2, 13, 768)
    picked = heads(layers[:, :, list(REFERENCE_LAYERS)])
    full = heads(layers)
    for name in full:
        torch.testing.assert_close(full[name], picked[name])
    padded = torch.cat([layers, 50 * torch.randn(1, 1, 13, 768)], dim=1)
    masked = heads(padded, torch.tensor([[True, True, False]]))
    for name in full:
        torch.testing.assert_close(masked[name], full[name])


def _randomise(module: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def test_apex_heads_outputs_ranges_and_std() -> None:
    heads = ApexHeads(HeadsConfig(num_layers=3, dim=16, hidden=[32, 8]))
    _randomise(heads)
    out = heads(torch.randn(5, 3, 16))
    expected = set(SCORE_NAMES) | {f"{n}_std" for n in SCORE_NAMES} | {"preference"}
    assert set(out) == expected
    for name in SCORE_NAMES:
        low, high = SCORE_RANGES[name]
        assert out[name].shape == (5,)
        assert bool(((out[name] >= low) & (out[name] <= high)).all())
        assert bool((out[f"{name}_std"] > 0).all())
    same = torch.randn(16)  # the layer weights sum to 1: equal layers mix to themselves
    assert torch.allclose(heads.mix(same.expand(3, 16)), same)


def test_apex_heads_masked_mean_ignores_padding_segments() -> None:
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=12, hidden=[16]))
    _randomise(heads, 1)
    song = torch.randn(1, 2, 1, 12)
    alone = heads(song)
    padded = torch.cat([song, 1e3 * torch.ones(1, 3, 1, 12)], dim=1)
    mask = torch.tensor([[True, True, False, False, False]])
    masked = heads(padded, mask)
    for name in alone:
        torch.testing.assert_close(masked[name], alone[name])
    unmasked = heads(padded)
    assert not torch.allclose(unmasked["score_streams"], alone["score_streams"])


def test_apex_heads_batch_order_and_segments() -> None:
    heads = ApexHeads(HeadsConfig(num_layers=2, dim=8, hidden=[16]))
    _randomise(heads, 2)
    x = torch.randn(4, 3, 2, 8)
    out = heads(x)
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = heads(x[perm])
    for name in out:
        torch.testing.assert_close(shuffled[name], out[name][perm])
    per_segment = heads.segments(x)
    for s in range(3):
        single = heads(x[:, s])
        for name in out:
            torch.testing.assert_close(per_segment[name][:, s], single[name])


def test_apex_heads_rejects_wrong_shape_and_bad_config() -> None:
    heads = ApexHeads(HeadsConfig(num_layers=13, dim=8, hidden=[8]))
    with pytest.raises(ValueError, match="encoder"):
        heads(torch.randn(2, 1, 8))
    with pytest.raises(ValueError):
        HeadsConfig(num_layers=0)


def test_feature_stats_standardise_input() -> None:
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=4, hidden=[8]))
    _randomise(heads, 3)
    x = torch.randn(6, 1, 4)
    before = heads(x)["clarity"]
    mean, std = torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([2.0, 4.0, 0.5, 1.0])
    heads.set_feature_stats(mean, std)
    after = heads(x * std + mean)["clarity"]
    torch.testing.assert_close(after, before)


def test_logistic_link_is_symmetric_and_monotone() -> None:
    a = {name: (low + high) / 2 for name, (low, high) in SCORE_RANGES.items()}
    b = {name: value + (1.0 if name == "clarity" else 0.0) for name, value in a.items()}
    p_ab = logistic_preference(a, b, LINK_WEIGHTS)
    assert p_ab == pytest.approx(1 - logistic_preference(b, a, LINK_WEIGHTS))
    assert p_ab < 0.5
    assert logistic_preference(a, a, LINK_WEIGHTS) == pytest.approx(0.5)

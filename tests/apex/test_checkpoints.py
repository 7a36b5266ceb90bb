"""Checkpoints: our format round-trips exactly; broken or mismatched files give clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from apex.checkpoints import (
    CheckpointError,
    load_model,
    load_reference_checkpoint,
    save_model,
)
from apex.heads import ApexHeads, HeadsConfig, ReferenceHeads
from apex.tasks import SCORE_NAMES


def _random_heads(seed: int = 0) -> ApexHeads:
    heads = ApexHeads(HeadsConfig(num_layers=3, dim=10, hidden=[12, 6]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in heads.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        heads.set_feature_stats(torch.randn(10, generator=gen), torch.rand(10, generator=gen) + 0.5)
    return heads


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    heads = _random_heads()
    meta = {
        "encoder_id": "fallback",
        "kind": "demo",
        "version": "3",
        "reference_distribution": {"score_streams": [1.0, 2.0, 3.0]},
        "metrics": {"spearman": {"clarity": 0.5}},
    }
    save_model(heads, tmp_path / "m", metadata=meta)
    loaded, info = load_model(tmp_path / "m")
    x = torch.randn(4, 2, 3, 10)
    mask = torch.tensor([[True, False]] * 4)
    want, got = heads(x, mask), loaded(x, mask)
    assert set(got) == set(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name
    assert loaded.config == heads.config
    assert (info.kind, info.version, info.encoder_id) == ("demo", "3", "fallback")
    assert info.is_demo
    assert info.reference_distribution("score_streams") == [1.0, 2.0, 3.0]
    assert info.to_dict()["metrics"] == {"spearman": {"clarity": 0.5}}


def test_from_pretrained_is_the_ecosystem_path(tmp_path: Path) -> None:
    heads = _random_heads(1)
    save_model(heads, tmp_path, metadata={"encoder_id": "fallback"})
    again = ApexHeads.from_pretrained(tmp_path, strict=True)
    x = torch.randn(2, 3, 10)
    assert torch.equal(again(x)["musicality"], heads(x)["musicality"])


def test_mismatched_config_names_the_keys(tmp_path: Path) -> None:
    save_model(_random_heads(), tmp_path, metadata={"encoder_id": "fallback"})
    config = json.loads((tmp_path / "config.json").read_text())
    config["dim"] = 11
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*trunk\.0\.weight"):
        load_model(tmp_path)


def test_missing_weights_and_bad_sources(tmp_path: Path) -> None:
    save_model(_random_heads(), tmp_path / "m", metadata={"encoder_id": "fallback"})
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="neither"):
        load_model(str(tmp_path / "nothing-here"))
    with pytest.raises(CheckpointError, match="encoder_id"):
        save_model(_random_heads(), tmp_path / "n", metadata={})


def test_hub_repo_offline_says_so() -> None:
    with pytest.raises(CheckpointError, match="offline"):
        load_model("no-such-owner/no-such-model", local_files_only=True)


def _save_reference(path: Path, state: dict, **extra) -> Path:
    payload = {"model_state": state, "task": "full", "shared": 2, "mode": "song"}
    payload.update({"epoch": 7, "val_loss": 0.25, **extra})
    torch.save(payload, path)
    return path


def test_reference_checkpoint_loads_and_reports_metadata(tmp_path: Path) -> None:
    source = ReferenceHeads(task="popularity", shared=3, mode="segment")
    path = _save_reference(
        tmp_path / "best_model.pt", source.state_dict(), task="popularity", shared=3, mode="segment"
    )
    heads = load_reference_checkpoint(path)
    assert (heads.task, heads.shared_depth, heads.mode) == ("popularity", 3, "segment")
    assert heads.checkpoint_info["epoch"] == 7
    x = torch.randn(2, 13, 768)
    assert torch.equal(heads(x)["score_likes"], source(x)["score_likes"])
    via_model, info = load_model(path)
    assert isinstance(via_model, ReferenceHeads)
    assert info.kind == "published"


def test_bare_state_dict_is_accepted(tmp_path: Path) -> None:
    source = ReferenceHeads(task="full", shared=3)
    torch.save(source.state_dict(), tmp_path / "bare.pt")
    heads = load_reference_checkpoint(tmp_path / "bare.pt")
    assert (heads.task, heads.shared_depth) == ("full", 3)
    assert set(heads(torch.randn(2, 4, 768))) == set(SCORE_NAMES)


def test_corrupted_reference_checkpoints_fail_clearly(tmp_path: Path) -> None:
    state = ReferenceHeads().state_dict()
    missing = dict(state)
    del missing["branch_clarity.branch.2.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: branch_clarity\.branch\.2\.weight"):
        load_reference_checkpoint(_save_reference(tmp_path / "a.pt", missing))
    extra = {**state, "shared.9.block.0.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"unexpected keys: shared\.9"):
        load_reference_checkpoint(_save_reference(tmp_path / "b.pt", extra))
    shaped = {**state, "shared.0.block.0.weight": torch.zeros(512, 1024)}
    with pytest.raises(CheckpointError, match=r"shape mismatches.*shared\.0\.block\.0\.weight"):
        load_reference_checkpoint(_save_reference(tmp_path / "c.pt", shaped))
    with pytest.raises(
        CheckpointError, match="popularity"
    ):  # branches of "full" under "popularity"
        load_reference_checkpoint(_save_reference(tmp_path / "d.pt", state, task="popularity"))
    (tmp_path / "e.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_reference_checkpoint(tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference_checkpoint(tmp_path / "missing.pt")

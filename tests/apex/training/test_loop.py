"""The training loop: overfits a tiny set, is reproducible, trains both head families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from apex.heads import ApexHeads, HeadsConfig
from apex.tasks import SCORE_NAMES, TASK_OUTPUTS
from apex.training.battles import Battles
from apex.training.data import EngagementData
from apex.training.loop import TrainConfig, calibrate, predict, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n: int = 48, layers: int = 2, dim: int = 8, seed: int = 0) -> EngagementData:
    """Songs whose seven targets are smooth functions of their embedding."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, layers, dim)).astype(np.float32)
    z = x.mean(axis=1) @ rng.normal(size=(dim, 2))
    targets = np.empty((n, len(SCORE_NAMES)), np.float32)
    targets[:, :2] = 100 / (1 + np.exp(-z))  # engagement 0-100
    targets[:, 2:] = 3 + np.tanh(z[:, :1])  # aesthetics 2-4
    split = np.array(["train"] * (n - 8) + ["val"] * 8)
    return EngagementData(
        ids=np.array([f"s{i}" for i in range(n)]),
        x=x,
        row_song=np.arange(n),
        song_x=x,
        targets=targets,
        split=split,
        platform=np.array(["p"] * n),
        duration_s=np.full(n, 30.0),
        encoder_id="fallback",
        fingerprint="f",
    )


def _heads(layers: int = 2, dim: int = 8) -> ApexHeads:
    return ApexHeads(HeadsConfig(num_layers=layers, dim=dim, hidden=[32, 16], dropout=0.0))


def _cfg(**kw) -> TrainConfig:
    base = dict(
        epochs=150,
        batch_size=16,
        lr=3e-3,
        weight_decay=0.0,
        patience=1000,
        progress=False,
        loss="equal",
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def test_tiny_run_overfits_a_tiny_set() -> None:
    data = _data()
    torch.manual_seed(0)
    result = train(data, _cfg(), model=_heads())
    out = predict(result.model, data.song_x[:40])
    train_mse = np.mean((out["score_streams"] - data.targets[:40, 0]) ** 2)
    baseline = np.var(data.targets[:40, 0])
    assert train_mse < 0.1 * baseline
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 5


def test_same_seed_same_model() -> None:
    data = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(train(data, _cfg(epochs=5, seed=7), model=_heads()).model.state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_early_stopping_restores_the_best_epoch() -> None:
    data = _data()
    result = train(data, _cfg(epochs=40, patience=3, lr=3e-2), model=_heads())
    best = min(h["val_criterion"] for h in result.history)
    assert result.best_val == pytest.approx(best)
    assert len(result.history) <= 40


def test_preference_loss_learns_the_battles() -> None:
    data = _data(n=64)
    utility = data.song_x.mean(axis=(1, 2))
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 64, 600), rng.integers(0, 64, 600)
    keep = a != b
    a, b = a[keep], b[keep]
    battles = Battles(
        a,
        b,
        (utility[a] > utility[b]).astype(np.float32),
        np.arange(len(a), dtype=float),
        np.zeros(len(a), bool),
    )
    result = train(
        data,
        _cfg(epochs=100, pref_weight=5.0, task="popularity"),
        battles=battles,
        val_battles=battles,  # early stopping must watch the preference loss too
        model=_heads(),
    )
    pref = predict(result.model, data.song_x)["preference"]
    agree = np.mean((pref[a] > pref[b]) == (utility[a] > utility[b]))
    assert agree > 0.85


def test_uncertainty_loss_and_calibration() -> None:
    data = _data()
    result = train(data, _cfg(loss="uncertainty", epochs=30), model=_heads())
    assert set(result.loss_weights) == set(SCORE_NAMES)
    cal = result.calibration
    assert set(cal) == set(SCORE_NAMES)
    for entry in cal.values():
        assert entry["scale"] > 0 and 0 <= entry["coverage90"] <= 1
    # calibration's scale is exactly the RMS of standardised residuals (written independently)
    out = predict(result.model, data.song_x[40:])
    r = out["coherence"] - data.targets[40:, 2]
    expected = np.sqrt(np.mean((r / out["coherence_std"]) ** 2))
    assert cal["coherence"]["scale"] == pytest.approx(expected, rel=1e-4)


def test_generic_module_and_calibration_without_std() -> None:
    class Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            y = self.lin(x.flatten(1))
            return {"score_streams": y[:, 0] * 50 + 50, "score_likes": y[:, 1] * 50 + 50}

    data = _data()
    result = train(data, _cfg(task="popularity", epochs=20, lr=1e-2), model=Linear())
    cal = calibrate(result.model, data.song_x[40:], data.targets[40:])
    assert set(cal) == {"score_streams", "score_likes"} and "scale" not in cal["score_likes"]


def test_reference_family_trains_on_premixed_rows() -> None:
    rng = np.random.default_rng(0)
    data = _data(n=40)
    x = rng.normal(size=(40, 768)).astype(np.float32)  # already-mixed reference embeddings
    data.x, data.song_x = x, x
    result = train(data, _cfg(family="reference", task="full", epochs=3, shared=3))
    assert result.model.shared_depth == 3
    assert set(predict(result.model, x)) == set(SCORE_NAMES)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="bar")
    with pytest.raises(ValueError, match="optimisation"):
        TrainConfig(pref_weight=-1.0)
    # the reference family gets a preference branch when votes train it
    assert TrainConfig(family="reference", pref_weight=1.0).pref_weight == 1.0


def test_the_papers_grid_trains(tmp_path) -> None:
    """The reference conditions (mode x task x loss x shared) run and save a reference .pt."""
    import pandas as pd

    from apex.checkpoints import load_model
    from apex.training.data import load_engagement, write_shard
    from apex.training.saving import model_metadata, save_trained

    rng = np.random.default_rng(0)
    n = 12
    frame = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "embedding": list(rng.normal(size=(n, 2, 4, 768)).astype(np.float32)),
            "duration_s": 60.0,
            "encoder_id": "m-a-p/MERT-v1-95M",
            "platform": "p",
            "split": ["train"] * 9 + ["val"] * 3,
            "streams": rng.lognormal(3, 1, n),
            "likes": rng.lognormal(1, 1, n),
            **{name: rng.uniform(1, 5, n) for name in SCORE_NAMES[2:]},
        }
    )
    write_shard(frame, tmp_path / "x.parquet")
    # every value of every axis of the paper's 2 x 2 x 3 x 2 grid, in 4 runs (the full product
    # is the same code 24 times and takes half a minute on the shared CPUs)
    grid = [
        ("song", "popularity", "equal", 2),
        ("segment", "full", "weighted", 3),
        ("song", "full", "uncertainty", 3),
        ("segment", "full", "uncertainty", 3),
    ]
    for mode, task, loss, shared in grid:
        data, transform = load_engagement(tmp_path / "x.parquet", mode=mode)
        cfg = _cfg(family="reference", mode=mode, task=task, loss=loss, shared=shared, epochs=1)
        result = train(data, cfg)
        assert set(predict(result.model, data.song_x)) == set(TASK_OUTPUTS[task])
    out = save_trained(result, tmp_path / "ref", model_metadata(result, data, transform))
    heads, _ = load_model(out / "best_model.pt")
    assert heads.task == "full" and heads.shared_depth == 3 and heads.mode == "segment"


def test_shared_plan_covers_every_training_song_and_hides_other_targets() -> None:
    from apex.training.loop import Stepper

    data = _data(n=64)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 64, 40), rng.integers(0, 64, 40)
    battles = Battles(a, b, np.ones(40, np.float32), np.arange(40.0), np.zeros(40, bool))
    train_rows = np.arange(56)  # the last 8 songs are the validation split
    step = Stepper(
        _heads(),
        data,
        train_rows,
        _cfg(batch_size=16, pref_weight=1.0),
        battles,
        torch.device("cpu"),
    )
    assert step.shared
    assert torch.isnan(step.y[56:]).all() and not torch.isnan(step.y[:56]).any()
    seen, used_pairs, rows_forwarded = set(), [], 0
    for rows, pick in step._plan():
        seen.update(rows.tolist())
        seen.update(a[pick].tolist() + b[pick].tolist())
        used_pairs.extend(pick.tolist())
        rows_forwarded += len(rows) + 2 * len(pick)
    assert set(range(56)) <= seen  # every training song at least once per epoch
    assert sorted(used_pairs) == list(range(40))  # every battle exactly once
    assert rows_forwarded < 56 + 80  # fewer rows than the separate plan

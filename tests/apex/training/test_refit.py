"""Refit: the gate's decisions, the versioned registry, champion safety, end-to-end refit."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.training.config import GateConfig
from apex.training.data import TargetTransform, load_engagement, write_shard
from apex.training.gate import gate
from apex.training.loop import TrainConfig
from apex.training.refit import RefitConfig, run_refit
from apex.training.registry import ModelRegistry, push_version
from tests.apex.frames import shard_frame

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _report(accuracy: float, spearman: float, n: int = 100) -> dict:
    return {
        "pairwise": {"accuracy": accuracy, "auc": accuracy, "n": n},
        "regression": {
            "score_streams": {"spearman": spearman},
            "score_likes": {"spearman": spearman},
        },
    }


def test_gate_accepts_a_better_challenger() -> None:
    decision = gate(_report(0.70, 0.60), _report(0.65, 0.58))
    assert decision.promote
    assert all("ok" in r for r in decision.reasons)


def test_gate_accepts_within_tolerance_and_refuses_beyond() -> None:
    cfg = GateConfig(accuracy_tolerance=0.01, spearman_tolerance=0.02)
    assert gate(_report(0.695, 0.59), _report(0.70, 0.60), cfg).promote
    worse_acc = gate(_report(0.68, 0.70), _report(0.70, 0.60), cfg)
    assert not worse_acc.promote and any(
        "accuracy" in r and "worse" in r for r in worse_acc.reasons
    )
    worse_rho = gate(_report(0.80, 0.50), _report(0.70, 0.60), cfg)
    assert not worse_rho.promote and any(
        "spearman" in r.lower() and "worse" in r for r in worse_rho.reasons
    )


def test_gate_refuses_undefined_metrics_and_too_few_battles() -> None:
    assert not gate(_report(float("nan"), 0.9), _report(0.6, 0.5)).promote
    assert not gate(_report(0.9, 0.9, n=3), _report(0.6, 0.5)).promote
    # no free first promotion: without a serving model to compare with, nothing is promoted
    first = gate(_report(0.9, 0.9, n=300), None)
    assert not first.promote and "nothing to compare" in first.reasons[0]


def test_spearman_tolerance_widens_to_the_held_out_noise_accuracy_does_not() -> None:
    challenger, serving = _report(0.80, 0.50), _report(0.70, 0.585)
    assert not gate(challenger, serving).promote
    noisy = gate(challenger, serving, noise={"spearman": 0.12})
    assert noisy.promote and any("tolerance 0.12" in r for r in noisy.reasons)
    assert not gate(_report(0.65, 0.9), _report(0.70, 0.5), noise={"accuracy": 0.5}).promote


def test_gate_holds_aesthetics_when_the_serving_model_has_them() -> None:
    def with_aes(acc: float, aes: float) -> dict:
        report = _report(acc, 0.6)
        report["regression"]["clarity"] = {"spearman": aes}
        return report

    assert not gate(with_aes(0.8, 0.50), with_aes(0.7, 0.80)).promote
    assert gate(with_aes(0.8, 0.79), with_aes(0.7, 0.80)).promote
    assert gate(with_aes(0.8, 0.10), _report(0.7, 0.6)).promote  # serving predicts none


def test_registry_versions_and_atomic_pointer(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    assert reg.champion() is None
    v1, v2 = reg.new_version(), reg.new_version()
    assert v1.name.startswith("v0001-") and v2.name.startswith("v0002-")
    reg.promote(v1)
    assert reg.champion() == v1
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(str(reg.champion()))

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(200):
        reg.promote(v2)
        reg.promote(v1)
    stop.set()
    reader.join()
    assert seen <= {str(v1), str(v2)}  # never None, never a half-written name


def test_push_without_repo_or_offline_degrades_with_a_message(tmp_path: Path) -> None:
    assert "no model repo" in push_version(tmp_path, None)
    message = push_version(tmp_path, "someone/apex-refit")
    assert "kept locally" in message


def _corpus(tmp_path: Path, n: int = 120, seed: int = 0):
    """Songs whose engagement and votes follow one latent quality of the embedding."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 1, 8)).astype(np.float32)
    quality = emb[:, 0, :3].sum(axis=1)
    split = np.where(np.arange(n) % 5 == 0, "test", np.where(np.arange(n) % 5 == 1, "val", "train"))
    streams = np.exp(quality + rng.normal(0, 0.5, n))
    likes = np.exp(quality + rng.normal(0, 0.5, n))
    frame = shard_frame(emb, split, streams, likes, coherence=3 + np.tanh(quality))
    write_shard(frame, tmp_path / "shards" / "0.parquet")
    a, b = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    p = 1 / (1 + np.exp(-(quality[a] - quality[b])))
    votes = pd.DataFrame(
        {
            "clip_a": [f"c{i}" for i in a],
            "clip_b": [f"c{i}" for i in b],
            "preference": np.where(rng.random(1500) < p, "A", "B"),
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(1500), "s"),
        }
    )
    data, transform = load_engagement(tmp_path / "shards")
    return data, transform, votes


def _refit_cfg(**kw) -> RefitConfig:
    base = dict(epochs=25, batch_size=32, lr=3e-3, pref_weight=1.0, progress=False, device="cpu")
    return RefitConfig(train=TrainConfig(**{**base, **kw}))


def _weak_serving(data):
    """A barely trained model standing in for what serves before any refit."""
    from apex.checkpoints import ModelInfo
    from apex.training.loop import train

    weak = train(data, TrainConfig(epochs=1, lr=1e-7, progress=False, device="cpu"))
    info = ModelInfo("weak", encoder_id="fallback", metadata={"train_config": {"task": "full"}})
    return weak.model, info


def test_first_refit_is_gated_against_the_serving_model(tmp_path: Path) -> None:
    data, transform, votes = _corpus(tmp_path, n=60)
    reg = ModelRegistry(tmp_path / "models")
    alone = run_refit(data, transform, votes, reg, _refit_cfg(epochs=3))
    assert not alone.decision.promote and reg.champion() is None
    assert any("no serving model" in r for r in alone.decision.reasons)
    _, info = _weak_serving(data)
    other = (_weak_serving(data)[0], type(info)("mert", encoder_id="m-a-p/MERT-v1-95M"))
    mismatch = run_refit(data, transform, votes, reg, _refit_cfg(epochs=3), serving=other)
    assert not mismatch.decision.promote
    assert any("cannot be compared" in r for r in mismatch.decision.reasons)


def test_held_out_votes_exclude_what_the_serving_model_trained_on(tmp_path: Path) -> None:
    data, transform, votes = _corpus(tmp_path, n=60)
    heads, info = _weak_serving(data)
    stamps = pd.to_datetime(votes["timestamp"]).astype("int64") / 1e9
    until = float(stamps.iloc[-100])  # the serving model saw all but the last 99 votes
    info = type(info)("weak", encoder_id="fallback", metadata={"votes_trained_until": until})
    reg = ModelRegistry(tmp_path / "models")
    out = run_refit(data, transform, votes, reg, _refit_cfg(epochs=3), serving=(heads, info))
    held = out.reports["challenger"]["pairwise"]
    usable = int((votes["clip_a"] != votes["clip_b"]).iloc[-99:].sum())  # self-pairs are dropped
    assert held["n"] + held["ties"] == usable  # not the ~300 of a plain 20 % time split


def test_refit_promotes_over_a_weaker_serving_model_then_refuses_a_worse_one(
    tmp_path: Path,
) -> None:
    data, transform, votes = _corpus(tmp_path)
    reg = ModelRegistry(tmp_path / "models")
    weak = _weak_serving(data)
    first = run_refit(data, transform, votes, reg, _refit_cfg(), serving=weak)
    assert first.decision.promote and reg.champion() == first.version
    assert first.decision.champion is not None  # the serving model's figures are kept
    record = json.loads((first.version / "metrics.json").read_text())
    assert record["gate"]["serving_version"] == "0" and record["serving"]["pairwise"]
    meta = json.loads((first.version / "metadata.json").read_text())
    assert meta["data_fingerprints"]["engagement"] == data.fingerprint
    assert TargetTransform.from_dict(meta["target_transform"]).quantiles
    assert meta["preference_trained"] and meta["calibration"]
    assert (first.version / "README.md").read_text().startswith("# APEX Arena refit")
    assert first.reports["challenger"]["pairwise"]["accuracy"] > 0.65
    # a challenger crippled on purpose (random init, one epoch at a near-zero learning rate)
    # must not replace the champion
    crippled = dataclasses.replace(_refit_cfg(epochs=1, lr=1e-7), warm_start=False)
    worse = run_refit(data, transform, votes, reg, crippled)
    assert not worse.decision.promote
    assert reg.champion() == first.version
    assert worse.version.is_dir() and (worse.version / "metrics.json").is_file()
    assert "NOT promoted" in (worse.version / "README.md").read_text()


def test_a_refit_that_raises_leaves_the_champion(tmp_path: Path, monkeypatch) -> None:
    data, transform, votes = _corpus(tmp_path, n=60)
    reg = ModelRegistry(tmp_path / "models")
    first = run_refit(data, transform, votes, reg, _refit_cfg(), serving=_weak_serving(data))
    import apex.training.refit as refit

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(refit, "train", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        run_refit(data, transform, votes, reg, _refit_cfg())
    assert reg.champion() == first.version


def test_training_config_scales_with_the_data() -> None:
    from apex.training.config import scaled_train_config

    small, paper = scaled_train_config(300), scaled_train_config(211_000)
    assert small.batch_size == 32 and paper.batch_size == 512
    assert paper.epochs == 50 and 50 <= small.epochs <= 200
    assert small.lr == pytest.approx(2e-3) and 1e-4 <= paper.lr < 2e-4
    assert small.patience == small.epochs // 5 and not small.progress
    # ~1,500 optimiser steps on small data, not the 50 x 10 of the paper's defaults
    assert small.epochs * -(-300 // small.batch_size) >= 1400
    pinned = scaled_train_config(300, epochs=7, lr=0.01, pref_weight=1.0)
    assert (pinned.epochs, pinned.lr, pinned.pref_weight) == (7, 0.01, 1.0)

"""apex train / eval / refit: flags mirror the config dataclasses; end-to-end on shards."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.cli import build_parser, main
from apex.training.config import GateConfig, TrainConfig
from apex.training.data import write_shard
from tests.apex.frames import shard_frame

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_config_field_has_a_flag() -> None:
    parser = build_parser()
    args = parser.parse_args(["refit", "--data", "x", "--batch-size", "7", "--no-progress"])
    for f in dataclasses.fields(TrainConfig) + dataclasses.fields(GateConfig):
        assert hasattr(args, f.name), f.name
    assert args.batch_size == 7 and args.progress is False and args.pref_weight == 1.0
    args = parser.parse_args(["train", "--data", "x", "--out", "y", "--family", "reference"])
    assert args.family == "reference" and args.pref_weight == 0.0


def _shards(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n = 60
    emb = rng.normal(size=(n, 1, 6)).astype(np.float32)
    q = emb[:, 0, :2].sum(1)
    split = np.where(np.arange(n) % 4 == 0, "test", "train")
    frame = shard_frame(emb, split, np.exp(q), np.exp(q), duration_s=20.0)
    write_shard(frame, tmp_path / "shards" / "0.parquet")
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    votes = pd.DataFrame(
        {
            "clip_a": [f"c{i}" for i in a],
            "clip_b": [f"c{i}" for i in b],
            "preference": np.where(q[a] > q[b], "A", "B"),
            "timestamp": np.arange(300.0),
        }
    )
    votes.to_csv(tmp_path / "votes.csv", index=False)
    return tmp_path / "shards", tmp_path / "votes.csv"


def test_train_then_eval_then_refit(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    shards, votes = _shards(tmp_path)
    small = [
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--lr",
        "0.003",
        "--no-progress",
        "--device",
        "cpu",
    ]
    out = tmp_path / "model"
    assert main(["train", "--data", str(shards), "--out", str(out), *small]) == 0
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    report = tmp_path / "r.json"
    code = main(
        [
            "eval",
            "--model",
            str(out),
            "--data",
            str(shards),
            "--votes",
            str(votes),
            "--json",
            str(report),
        ]
    )
    assert code == 0 and "pairwise" in report.read_text()
    capsys.readouterr()
    # nothing serves yet and nothing is named to compare with: no free first promotion
    assert main(["refit", "--data", str(shards), "--votes", str(votes), *small]) == 0
    alone = capsys.readouterr().out
    assert "not promoted" in alone and "no serving model" in alone
    assert not (tmp_path / "data" / "models" / "refits" / "CHAMPION").exists()
    # gated against a model that barely trained: the challenger beats it and is promoted
    weak = tmp_path / "weak"
    assert main(["train", "--data", str(shards), "--out", str(weak), *small, "--lr", "1e-7"]) == 0
    capsys.readouterr()
    against = ["--against", str(weak)]
    assert main(["refit", "--data", str(shards), "--votes", str(votes), *small, *against]) == 0
    assert "PROMOTED" in capsys.readouterr().out
    assert (tmp_path / "data" / "models" / "refits" / "CHAMPION").is_file()


def test_bad_values_exit_with_a_message(tmp_path: Path, capsys) -> None:
    shards, _ = _shards(tmp_path)
    code = main(["train", "--data", str(shards), "--out", str(tmp_path / "m"), "--loss", "median"])
    assert code == 2 and "loss must be one of" in capsys.readouterr().err
    assert main(["eval"]) == 2

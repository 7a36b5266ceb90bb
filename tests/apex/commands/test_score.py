"""``apex score``: table and JSON output, per-file errors, exit codes, fallback notices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from apex.checkpoints import save_model
from apex.cli import main
from apex.encoders import FALLBACK_DIM
from apex.heads import ApexHeads, HeadsConfig
from apex.tasks import SCORE_NAMES, SCORE_RANGES


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random heads for the fallback encoder, saved in our format (no demo build needed)."""
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=FALLBACK_DIM, hidden=[8]))
    metadata = {"encoder_id": "fallback", "encoder_spec": "fallback", "version": "test"}
    return save_model(heads, tmp_path_factory.mktemp("cli") / "heads", metadata=metadata)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    t = np.arange(2 * 24_000) / 24_000
    good = tmp_path / "good.wav"
    sf.write(good, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 24_000)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio at all")
    return {"good": good, "bad": bad, "missing": tmp_path / "missing.flac"}


def test_good_and_bad_files_table(model_dir: Path, files: dict[str, Path], capsys) -> None:
    code = main(["score", str(files["good"]), str(files["bad"]), "--model", str(model_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    rows = [line for line in out.splitlines() if line.startswith("good.wav")]
    assert len(rows) == 1
    assert "broken.wav" not in out
    assert "broken.wav" in err
    assert "good.wav" not in err
    assert "1 of 2 file(s) failed" in err
    assert "fallback" in err.lower()  # says plainly that the fallback encoder answers


def test_json_lines_and_success_exit(model_dir: Path, files: dict[str, Path], capsys) -> None:
    code = main(
        ["score", "--json", str(files["good"]), str(files["good"]), "--model", str(model_dir)]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        payload = json.loads(line)
        assert payload["file"] == str(files["good"])
        assert set(payload["scores"]) == set(SCORE_NAMES)
        for name, value in payload["scores"].items():
            low, high = SCORE_RANGES[name]
            assert low <= value <= high
        assert payload["segments"] and payload["segments"][0]["start_s"] == 0.0
        assert payload["duration_s"] == pytest.approx(2.0)


def test_missing_file_is_reported(model_dir: Path, files: dict[str, Path], capsys) -> None:
    code = main(["score", "--json", str(files["missing"]), "--model", str(model_dir)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "missing.flac" in err


def test_unloadable_model_exits_2(files: dict[str, Path], tmp_path: Path, capsys) -> None:
    code = main(["score", str(files["good"]), "--model", str(tmp_path / "no-model-here")])
    _, err = capsys.readouterr()
    assert code == 2
    assert "cannot load the model" in err

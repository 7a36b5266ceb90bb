"""What a restart would lose (:mod:`webui.state`): a Space without the Hub repos or a token says
so plainly; with them only a crash loses the votes not yet pushed; self-hosted loses nothing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from apex.settings import Settings
from apex.training.model_repo import record_commit
from apex.training.registry import registry_for
from webui.state import config_warnings, state_line


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """On a Space (SPACE_ID set), with no token anywhere (HF_TOKEN unset, no stored login)."""
    monkeypatch.setenv("SPACE_ID", "someone/apex-arena")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))


def _champion(settings: Settings) -> Path:
    registry = registry_for(settings)
    version = registry.new_version()
    (version / "metadata.json").write_text(json.dumps({"version": version.name}))
    registry.promote(version)
    return version


def test_a_space_without_repos_says_votes_and_models_are_lost(space, tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "d")
    warnings = config_warnings(settings)
    assert any(w.startswith("APEX_VOTES_REPO is not set: every vote is lost") for w in warnings)
    assert any(
        w.startswith("APEX_MODEL_REPO is not set: a promoted model is lost") for w in warnings
    )
    version = _champion(settings)
    line = state_line(settings, 42, None)
    assert line.startswith(
        f"A restart now would lose all 42 votes, the promoted model `{version.name}`"
    )
    assert "caches are rebuilt at start" in line


def test_repos_without_a_token_are_no_better(space, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "d", votes_repo="o/votes", model_repo="o/models"
    )
    warnings = config_warnings(settings)
    assert [w.split(":")[0] for w in warnings] == ["HF_TOKEN is not set"] * 2
    assert "o/votes" in warnings[0] and "o/models" in warnings[1]
    assert state_line(settings, 7, None).startswith("A restart now would lose all 7 votes")


def test_with_repos_and_a_token_only_a_crash_loses_the_pending_votes(
    space, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "d",
        votes_repo="o/votes",
        model_repo="o/models",
        cache_root=tmp_path / "bucket",
    )
    assert config_warnings(settings) == []
    version = _champion(settings)
    line = state_line(settings, 100, SimpleNamespace(pending_votes=12))
    assert line.startswith(f"A restart now would lose the promoted model `{version.name}`")
    record_commit(version, "o/models", "c" * 40, "pushed")  # the champion is on the Hub now
    line = state_line(settings, 100, SimpleNamespace(pending_votes=12))
    assert line == (
        "A restart now would lose nothing; 12 votes not yet on the Hub are pushed by a graceful "
        f"restart and lost only in a crash; caches stay in `{tmp_path / 'bucket'}`."
    )


def test_self_hosted_loses_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPACE_ID", raising=False)
    settings = Settings.from_env({}, data_dir=tmp_path / "d")
    assert config_warnings(settings) == []
    assert state_line(settings, 5, None).startswith("Self-hosted: a restart loses nothing")

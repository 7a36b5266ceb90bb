"""The one CLI convention: flags that set a config dataclass come from it, for every command."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from apex.cli import build_parser, from_args


@pytest.fixture(scope="module")
def parser():
    return build_parser()


def test_embed_flags_are_embed_config_fields(parser) -> None:
    from apex.embed import EmbedConfig

    args = parser.parse_args(["embed", "m.jsonl", "--out", "o"])
    assert from_args(EmbedConfig, args) == EmbedConfig(manifest="m.jsonl", out=Path("o"))
    args = parser.parse_args(
        ["embed", "m.jsonl", "--out", "o", "--num-cpus", "3", "--engine", "ray", "--no-progress"]
    )
    config = from_args(EmbedConfig, args)
    assert config.num_cpus == 3 and config.engine == "ray" and config.progress is False
    with pytest.raises(SystemExit):  # choices come with the flag
        parser.parse_args(["embed", "m.jsonl", "--out", "o", "--precision", "half"])


def test_score_flags_are_settings_fields_defaulting_to_the_environment(parser) -> None:
    from apex.commands.score import _SETTINGS, _settings
    from apex.settings import Settings

    fields = {f.name for f in dataclasses.fields(Settings)}
    assert set(_SETTINGS) <= fields
    args = parser.parse_args(["score", "a.wav"])
    assert all(getattr(args, name) is None for name in _SETTINGS)  # unset: the APEX_* value
    args = parser.parse_args(["score", "a.wav", "--max-audio-s", "30", "--model", "demo"])
    settings = _settings(args)
    assert settings.max_audio_s == 30.0 and settings.model == "demo"


def test_refit_and_eval_share_the_refit_configs_holdout_fraction(parser) -> None:
    from apex.training.config import GateConfig, TrainConfig
    from apex.training.refit import RefitConfig

    default = RefitConfig().holdout_fraction
    for command in (["refit", "--data", "x"], ["eval"]):
        assert parser.parse_args(command).holdout_fraction == default
    args = parser.parse_args(["refit", "--data", "x", "--holdout-fraction", "0.3", "--epochs", "3"])
    config = from_args(
        RefitConfig, args, train=from_args(TrainConfig, args), gate=from_args(GateConfig, args)
    )
    assert config.holdout_fraction == 0.3 and config.train.epochs == 3


def test_an_expected_error_is_one_line_and_exit_2(capsys) -> None:
    from apex.cli import main

    assert main(["refit", "--data", "nowhere", "--votes", "nowhere-either"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("apex refit: error: ")

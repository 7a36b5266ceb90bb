"""Shared fixtures: isolated settings, a small demo corpus, a tiny random HuBERT-shaped encoder.

Nothing here touches the network: the Hub is disabled for the whole run, so any code path that
would need it must fail over to its offline counterpart (which is what the tests check).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The Hub cannot be reached from the test machine; make every library fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def settings(tmp_path: Path):
    """Settings whose data directory is a fresh temporary folder."""
    from apex.settings import Settings

    return Settings.from_env({}, data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def small_demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo corpus (48 clips) in the audiofolder layout, built once per test run."""
    from apex.demo import build_demo_corpus

    return build_demo_corpus(tmp_path_factory.mktemp("demo-small"), seed=0, n_clips=48)


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MERT-style (HuBERT-shaped) checkpoint saved to a local directory."""
    from apex.encoders.mert import save_debug_checkpoint

    return save_debug_checkpoint(tmp_path_factory.mktemp("tiny-hubert"))

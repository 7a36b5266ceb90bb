"""Fixtures of the encoder tests: the tiny MERT-style encoder and one 65 s song through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex.audio import Audio
from apex.encoders import Embedding, MertEncoder
from tests.apex.encoders.clips import song


@pytest.fixture(scope="module")
def reference_encoder(tiny_hubert_dir: Path) -> MertEncoder:
    return MertEncoder.from_pretrained(
        tiny_hubert_dir, precision="reference", device="cpu", batch_size=4
    )


@pytest.fixture(scope="module")
def song_65s() -> Audio:
    return song(65.0)


@pytest.fixture(scope="module")
def embedding_65s(reference_encoder: MertEncoder, song_65s: Audio) -> Embedding:
    """The 65 s song encoded once, all three segments in one batch (batch_size 4)."""
    assert reference_encoder.batch_size >= 3
    return reference_encoder.encode(song_65s)

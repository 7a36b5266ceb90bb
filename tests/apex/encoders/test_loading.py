"""apex.encoders.load_encoder: which encoder a spec names, and what an offline Hub id gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex.encoders import (
    CachedEncoder,
    EncoderUnavailable,
    FallbackEncoder,
    MertEncoder,
    load_encoder,
)


def test_load_encoder_specs(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    assert isinstance(load_encoder("fallback"), FallbackEncoder)
    mert = load_encoder(str(tiny_hubert_dir), precision="reference", device="cpu")
    assert isinstance(mert, MertEncoder) and mert.num_layers == 3
    wrapped = load_encoder("fallback", cache_dir=tmp_path)
    assert isinstance(wrapped, CachedEncoder) and wrapped.is_fallback


def test_offline_hub_id_raises_encoder_unavailable() -> None:
    with pytest.raises(EncoderUnavailable, match="Hugging Face Hub"):
        load_encoder("nobody-here/not-a-real-mert", local_files_only=True)
    with pytest.raises(EncoderUnavailable, match="neither a model directory"):
        load_encoder("no/such/dir")

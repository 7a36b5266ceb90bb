"""Engagement frames for the training tests: one row per song, the columns a shard holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def shard_frame(
    emb: np.ndarray, split: Any, streams: np.ndarray, likes: np.ndarray, **columns: Any
) -> pd.DataFrame:
    """Songs ``c0..c{N-1}`` with embeddings ``emb`` ``[N, L, D]`` from the fallback encoder on
    the demo platform, their ``split`` and raw counts; ``columns`` adds or overrides columns
    (``duration_s`` defaults to 30 s)."""
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(emb))],
            "embedding": list(emb),
            "duration_s": 30.0,
            "encoder_id": "fallback",
            "platform": "demo",
            "split": split,
            "streams": streams,
            "likes": likes,
            **columns,
        }
    )

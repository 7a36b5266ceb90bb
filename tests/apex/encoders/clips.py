"""Generated clips for the encoder tests."""

from __future__ import annotations

import numpy as np

from apex.audio import SAMPLE_RATE, Audio, load_audio


def song(seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    return load_audio((wave.astype(np.float32), SAMPLE_RATE))

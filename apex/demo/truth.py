"""Ground truth of the demo corpus: aesthetics from traits, engagement counts and scores, quality.

The formulas, with the constants below, are in ``data/README.md`` ("Demo corpus").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from apex.demo.systems import TRAITS
from apex.tasks import AESTHETICS, ENGAGEMENT_POWER

#: Exponent of the power transform of the engagement percentile (the training target's default).
ENGAGEMENT_EXPONENT = ENGAGEMENT_POWER
#: Standard deviation of the per-clip "rater" noise on the 0-1 scale (0.12 on the 1-5 scale).
RATER_NOISE = 0.03
ROBOT_VOICE_PENALTY = 0.6

#: Weight of each trait in each aesthetic; each row sums to 1.
AESTHETIC_WEIGHTS: Mapping[str, Mapping[str, float]] = {
    "coherence": {"structure": 0.35, "timing": 0.30, "harmony": 0.20, "headroom": 0.15},
    "musicality": {"harmony": 0.45, "timing": 0.30, "expression": 0.25},
    "memorability": {"structure": 0.55, "harmony": 0.30, "expression": 0.15},
    "clarity": {"structure": 0.40, "cleanliness": 0.20, "brightness": 0.20, "headroom": 0.20},
    "naturalness": {"expression": 0.50, "headroom": 0.20, "cleanliness": 0.15, "brightness": 0.15},
}


def aesthetics(
    traits: np.ndarray, sung: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``{aesthetic: [N]}`` on 1-5 from ``traits`` ``[N, len(TRAITS)]`` in (0, 1) and ``sung``
    ``[N]`` (a robotic sung lead loses naturalness); ``rng`` draws the rater noise."""
    weights = np.array([[AESTHETIC_WEIGHTS[a].get(t, 0.0) for t in TRAITS] for a in AESTHETICS])
    raw = traits @ weights.T + rng.normal(0.0, RATER_NOISE, (len(traits), len(AESTHETICS)))
    scores = 1.0 + 4.0 * np.clip(raw, 0.0, 1.0)
    nat = AESTHETICS.index("naturalness")
    expression = traits[:, TRAITS.index("expression")]
    scores[:, nat] -= ROBOT_VOICE_PENALTY * (1.0 - expression) * sung
    scores = np.clip(scores, 1.0, 5.0)
    return {name: scores[:, i] for i, name in enumerate(AESTHETICS)}


def engagement_scores(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """``[N]`` raw counts -> ``[N]`` scores in (0, 100]: percentile rank (ties averaged), then the
    power transform."""
    percentile = pd.Series(np.asarray(counts, dtype=float)).rank(method="average", pct=True)
    return 100.0 * percentile.to_numpy() ** ENGAGEMENT_EXPONENT


def engagement(scores: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``streams``, ``likes`` (``[N]`` int64), ``score_streams``, ``score_likes`` (0-100) and
    ``quality`` (about 1-5) from the aesthetics ``{name: [N]}``."""
    n = len(scores[AESTHETICS[0]])
    mean = np.mean([scores[a] for a in AESTHETICS], axis=0)
    popularity = rng.standard_normal(n)
    log_streams = 5.5 + 1.1 * (mean - 3.0) + 0.9 * popularity + 0.5 * rng.standard_t(3, n)
    streams = np.floor(np.exp(np.clip(log_streams, 0.0, 16.0))).astype(np.int64)
    like_logit = (
        -3.2
        + 0.5 * (scores["memorability"] - 3.0)
        + 0.3 * (scores["musicality"] - 3.0)
        + 0.3 * popularity
        + 0.3 * rng.standard_t(3, n)
    )
    likes = rng.binomial(streams, 1.0 / (1.0 + np.exp(-like_logit))).astype(np.int64)
    appeal = 0.5 * popularity + np.sqrt(0.75) * rng.standard_normal(n)
    return {
        "streams": streams,
        "likes": likes,
        "score_streams": engagement_scores(streams),
        "score_likes": engagement_scores(likes),
        "quality": mean + 0.2 * appeal,
    }

"""Ground truth of the demo corpus: aesthetics from traits, engagement counts and scores, quality.

All formulas are documented in ``data/README.md`` ("Demo corpus"); the constants below are the
numbers it quotes. Per clip, with traits ``t`` in (0, 1) (see :mod:`apex.demo.systems`):

- aesthetic ``a = 1 + 4 * clip(sum_k W[a][k] * t[k] + N(0, RATER_NOISE), 0, 1)`` (1-5 scale; the
  weights of each aesthetic sum to 1), minus ``ROBOT_VOICE_PENALTY * (1 - expression)`` on
  naturalness for a sung lead (a robotic voice is more unnatural than a robotic instrument);
- hidden popularity ``z ~ N(0, 1)``; ``m = mean(aesthetics)``;
- ``log(streams) = 5.5 + 1.1 * (m - 3) + 0.9 * z + 0.5 * t3`` (``t3``: Student-t, 3 dof: heavy
  tails), ``streams = floor(exp(.))``;
- ``likes ~ Binomial(streams, sigmoid(-3.2 + 0.5 * (memorability - 3) + 0.3 * (musicality - 3)
  + 0.3 * z + 0.3 * t3))``;
- engagement score ``100 * percentile ** ENGAGEMENT_EXPONENT`` where ``percentile`` is the average
  rank of the raw count divided by the number of clips, in (0, 1];
- latent preference quality ``m + 0.2 * (0.5 * z + sqrt(0.75) * N(0, 1))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

from apex.demo.systems import TRAITS
from apex.tasks import AESTHETICS, ENGAGEMENT_POWER

#: Exponent of the power transform applied to the engagement percentile (see data/README.md);
#: the same exponent the training target transform uses by default.
ENGAGEMENT_EXPONENT = ENGAGEMENT_POWER
#: Standard deviation of the per-clip "rater" noise on the 0-1 scale (0.12 on the 1-5 scale).
RATER_NOISE = 0.03
ROBOT_VOICE_PENALTY = 0.6

#: Weight of each trait in each aesthetic; each row sums to 1.
AESTHETIC_WEIGHTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "coherence": MappingProxyType(
            {"structure": 0.35, "timing": 0.30, "harmony": 0.20, "headroom": 0.15}
        ),
        "musicality": MappingProxyType({"harmony": 0.45, "timing": 0.30, "expression": 0.25}),
        "memorability": MappingProxyType({"structure": 0.55, "harmony": 0.30, "expression": 0.15}),
        "clarity": MappingProxyType(
            {"structure": 0.40, "cleanliness": 0.20, "brightness": 0.20, "headroom": 0.20}
        ),
        "naturalness": MappingProxyType(
            {"expression": 0.50, "headroom": 0.20, "cleanliness": 0.15, "brightness": 0.15}
        ),
    }
)


def weight_matrix() -> np.ndarray:
    """``[len(AESTHETICS), len(TRAITS)]`` weights, rows in AESTHETICS order."""
    return np.array([[AESTHETIC_WEIGHTS[a].get(t, 0.0) for t in TRAITS] for a in AESTHETICS])


def aesthetics(
    traits: np.ndarray, sung: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Ground-truth aesthetic scores.

    Args:
        traits: ``[N, len(TRAITS)]`` trait values in (0, 1).
        sung: ``[N]`` bool, True where the lead is vocal-like.
        rng: Draws the rater noise.

    Returns:
        ``{aesthetic: [N] float}`` on the 1-5 scale.
    """
    raw = traits @ weight_matrix().T + rng.normal(0.0, RATER_NOISE, (len(traits), len(AESTHETICS)))
    scores = 1.0 + 4.0 * np.clip(raw, 0.0, 1.0)
    nat = AESTHETICS.index("naturalness")
    expression = traits[:, TRAITS.index("expression")]
    scores[:, nat] -= ROBOT_VOICE_PENALTY * (1.0 - expression) * sung
    scores = np.clip(scores, 1.0, 5.0)
    return {name: scores[:, i] for i, name in enumerate(AESTHETICS)}


def engagement_scores(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Map raw counts to 0-100 scores: percentile rank (ties averaged), then the power transform.

    Args:
        counts: ``[N]`` raw stream or like counts.

    Returns:
        ``[N]`` float scores in (0, 100]; order-preserving (equal counts get equal scores).
    """
    percentile = pd.Series(np.asarray(counts, dtype=float)).rank(method="average", pct=True)
    return 100.0 * percentile.to_numpy() ** ENGAGEMENT_EXPONENT


def engagement(scores: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw counts, engagement scores and the latent preference quality.

    Args:
        scores: ``{aesthetic: [N]}`` from :func:`aesthetics`.
        rng: Draws the hidden popularity factor and the heavy-tailed noise.

    Returns:
        ``streams`` and ``likes`` (``[N]`` int64), ``score_streams`` and ``score_likes`` (``[N]``,
        0-100), ``quality`` (``[N]``, about the 1-5 scale).
    """
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

"""Simulated listeners with a hidden taste: a fixed function of the demo corpus's ground truth.

The taste differs on purpose from the latent ``quality`` that :mod:`apex.demo.votes` (and so the
demo model's preference head) uses, and from the fixed score link :data:`apex.heads.LINK_WEIGHTS`
(equal weights on the aesthetics): these listeners like clear, natural-sounding clips and dislike
catchy, tightly structured ones (the weights sum to zero), so a model can only learn their taste
from their votes. A listener prefers clip A over B with the
Bradley-Terry probability ``sigmoid(scale * (u_A - u_B))`` of the utilities ``u`` (z-scored over
the corpus); there are no ties, so every vote is decisive.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Hidden taste: ground-truth column -> weight in the utility (columns z-scored first).
HIDDEN_TASTE: Mapping[str, float] = {
    "clarity": 1.0,
    "naturalness": 0.5,
    "memorability": -0.8,
    "coherence": -0.7,
}
#: Logits per unit of utility difference (about 80 % agreement between two listeners).
TASTE_SCALE = 2.5


def hidden_utility(meta: pd.DataFrame, taste: Mapping[str, float] = HIDDEN_TASTE) -> pd.Series:
    """Per-clip utility ``[N]`` (indexed by ``clip_id``) of the hidden taste."""
    total = np.zeros(len(meta))
    for column, weight in taste.items():
        values = meta[column].to_numpy(float)
        total += weight * (values - values.mean()) / (values.std() or 1.0)
    return pd.Series(total, index=meta["clip_id"].astype(str).to_numpy())


def listener_votes(
    utility: pd.Series,
    clip_a: np.ndarray,
    clip_b: np.ndarray,
    rng: np.random.Generator,
    scale: float = TASTE_SCALE,
) -> np.ndarray:
    """``"A"``/``"B"`` for each pair ``[P]`` of clip ids, drawn from the listeners' taste."""
    margin = utility.loc[clip_a].to_numpy() - utility.loc[clip_b].to_numpy()
    p_a = 1.0 / (1.0 + np.exp(-scale * margin))
    return np.where(rng.random(len(p_a)) < p_a, "A", "B")

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


def embedding_utility(vectors: Mapping[str, np.ndarray], seed: int = 0) -> pd.Series:
    """Per-clip utility ``[N]`` (indexed by clip id) of a taste the embeddings themselves express:
    the z-scored projection of each clip's standardised vector ``[D]`` (each dimension z-scored
    over the clips, so no one large dimension decides) on a seeded random unit direction.

    For listeners of a model with no ground truth (the published heads on MERT): pass each
    clip's embedding as the heads mix it, so the taste is one the heads' inputs can express.
    """
    ids = list(vectors)
    x = np.stack([np.asarray(vectors[i], dtype=np.float64).ravel() for i in ids])
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    direction = np.random.default_rng(seed).standard_normal(x.shape[1])
    u = x @ (direction / np.linalg.norm(direction))
    return pd.Series((u - u.mean()) / (u.std() or 1.0), index=ids)

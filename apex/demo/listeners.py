"""Simulated listeners, the one model of a choice between two clips: BOTH_BAD with probability
``b``, else TIE with probability ``t``, else A wins with the Bradley-Terry probability
``p_a = sigmoid(scale * (u_A - u_B) + bias)`` of utilities ``u``. Simulations differ only in their
:class:`Taste` and truth ``u``; one uniform number decides each vote (deterministic per seed)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from apex.tasks import PREFERENCES

#: :data:`apex.tasks.PREFERENCES` in the order one uniform number draws them (seeds depend on it).
_DRAW_ORDER: tuple[str, ...] = tuple(PREFERENCES[i] for i in (3, 2, 0, 1))
BOTH_BAD_MAX, BOTH_BAD_SLOPE, BOTH_BAD_BELOW = 0.6, 4.0, 2.6
TIE_BASE, TIE_CLOSE, TIE_WIDTH = 0.08, 0.15, 0.5
MEAN_GAP_S = 45.0  # mean seconds between consecutive simulated votes
DEFAULT_START = "2026-01-01T00:00:00Z"
VOTE_COLUMNS = (
    "battle_uuid",
    "timestamp",
    "clip_a",
    "clip_b",
    "system_a",
    "system_b",
    "prompt",
    "is_instrumental",
    "preference",
    "voter",
    "p_a",
)


@dataclass(frozen=True)
class Taste:
    """How listeners turn a utility gap into a choice: ``scale`` logits per unit of utility
    difference; ``tie`` a constant P(TIE), or None for the demo's closeness model
    ``TIE_BASE + TIE_CLOSE * exp(-((u_A - u_B) / TIE_WIDTH) ** 2)``; ``both_bad``: the demo's
    model on 1-5 utilities, ``BOTH_BAD_MAX * sigmoid(BOTH_BAD_SLOPE * (BOTH_BAD_BELOW - max(u)))``.
    """

    scale: float
    tie: float | None = 0.0
    both_bad: bool = False


#: The demo corpus's listeners (:func:`simulate_votes`), on its latent ``quality`` (1-5).
QUALITY = Taste(scale=1.5, tie=None, both_bad=True)
#: Listeners of :func:`hidden_utility` or :func:`embedding_utility` (:func:`listener_votes`):
#: no ties, about 80 % agreement between two listeners.
HIDDEN = Taste(scale=2.5)
#: Listeners of system strengths in nats (:mod:`annotation.voter_sim`,
#: :func:`loudness_biased_votes`).
ARENA = Taste(scale=1.0, tie=0.05)
#: The hidden taste: ground-truth column -> weight (columns z-scored first). Clear, natural clips
#: are liked, catchy, tightly structured ones disliked (weights sum to zero).
HIDDEN_TASTE = {"clarity": 1.0, "naturalness": 0.5, "memorability": -0.8, "coherence": -0.7}


def outcome_probabilities(
    ua: np.ndarray, ub: np.ndarray, taste: Taste = QUALITY, bias: np.ndarray | float = 0.0
) -> dict[str, np.ndarray]:
    """``{"A", "B", "TIE", "BOTH_BAD"}`` -> ``[N]`` probabilities summing to 1 for battles of
    utilities ``ua``, ``ub`` (``[N]`` each), plus ``"p_a"``: P(A beats B) in a decisive vote."""
    ua, ub = np.asarray(ua, dtype=float), np.asarray(ub, dtype=float)
    p_a = expit(taste.scale * (ua - ub) + bias)
    both_bad = np.zeros_like(p_a)
    if taste.both_bad:
        both_bad = BOTH_BAD_MAX * expit(BOTH_BAD_SLOPE * (BOTH_BAD_BELOW - np.maximum(ua, ub)))
    closeness = TIE_BASE + TIE_CLOSE * np.exp(-(((ua - ub) / TIE_WIDTH) ** 2))
    tie = (1.0 - both_bad) * (closeness if taste.tie is None else taste.tie)
    decisive = 1.0 - both_bad - tie
    return {
        "A": decisive * p_a,
        "B": decisive * (1 - p_a),
        "TIE": tie,
        "BOTH_BAD": both_bad,
        "p_a": p_a,
    }


def choose(probs: Mapping[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``[N]`` preferences drawn from :func:`outcome_probabilities`, one uniform number each."""
    cumulative = np.cumsum([probs[k] for k in _DRAW_ORDER[:-1]], axis=0)
    u = rng.random(cumulative.shape[1])
    return np.array(_DRAW_ORDER)[(u[None, :] >= cumulative).sum(axis=0)]


def hidden_utility(meta: pd.DataFrame) -> pd.Series:
    """Per-clip utility ``[N]`` (indexed by ``clip_id``) of :data:`HIDDEN_TASTE`."""
    total = np.zeros(len(meta))
    for column, weight in HIDDEN_TASTE.items():
        values = meta[column].to_numpy(float)
        total += weight * (values - values.mean()) / (values.std() or 1.0)
    return pd.Series(total, index=meta["clip_id"].astype(str).to_numpy())


def embedding_utility(vectors: Mapping[str, np.ndarray], seed: int = 0) -> pd.Series:
    """Per-clip utility ``[N]`` (indexed by clip id) for listeners of a model with no ground
    truth: the z-scored projection of each clip's vector ``[D]`` (dimensions z-scored over the
    clips) on a seeded random unit direction. Pass each clip's embedding as the heads mix it.
    """
    ids = list(vectors)
    x = np.stack([np.asarray(vectors[i], dtype=np.float64).ravel() for i in ids])
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    direction = np.random.default_rng(seed).standard_normal(x.shape[1])
    u = x @ (direction / np.linalg.norm(direction))
    return pd.Series((u - u.mean()) / (u.std() or 1.0), index=ids)


def listener_votes(
    utility: pd.Series,
    clip_a: np.ndarray,
    clip_b: np.ndarray,
    rng: np.random.Generator,
    scale: float = HIDDEN.scale,
) -> np.ndarray:
    """``"A"``/``"B"`` for each pair ``[P]`` of clip ids, by listeners of ``utility``."""
    ua, ub = utility.loc[clip_a].to_numpy(), utility.loc[clip_b].to_numpy()
    return choose(outcome_probabilities(ua, ub, Taste(scale)), rng)


def simulate_votes(metadata: pd.DataFrame, n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` arena votes of :data:`QUALITY` listeners on the clips of ``metadata`` (columns
    ``clip_id``, ``system``, ``prompt``, ``is_instrumental``, ``quality``): a battle pairs clips of
    different systems, on the same prompt where possible; voters are pseudonyms with heavy-tailed
    activity. Rows of :data:`VOTE_COLUMNS`: ``timestamp`` UTC, strictly increasing after
    :data:`DEFAULT_START` by exponential gaps of mean :data:`MEAN_GAP_S`; ``p_a`` the latent
    P(A beats B). Raises ValueError when ``n`` < 0, columns are missing or
    there are fewer than two systems."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0.")
    needed = ["clip_id", "system", "prompt", "is_instrumental", "quality"]
    missing = [c for c in needed if c not in metadata.columns]
    if missing:
        raise ValueError(f"metadata lacks columns {missing}; pass apex.demo.load_metadata(dir).")
    clips = metadata[needed].sort_values(["prompt", "clip_id"]).reset_index(drop=True)
    if clips["system"].nunique() < 2:
        raise ValueError("simulated votes need clips from at least two different systems.")
    rng = np.random.default_rng([seed, 7])
    a, b = _draw_pairs(clips, n, rng)
    quality = clips["quality"].to_numpy(float)
    probs = outcome_probabilities(quality[a], quality[b])
    preference = choose(probs, rng)
    instrumental = clips["is_instrumental"].to_numpy(bool)
    return pd.DataFrame(
        {
            "battle_uuid": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)],
            "timestamp": _timestamps(n, rng),
            "clip_a": clips["clip_id"].to_numpy()[a],
            "clip_b": clips["clip_id"].to_numpy()[b],
            "system_a": clips["system"].to_numpy()[a],
            "system_b": clips["system"].to_numpy()[b],
            "prompt": clips["prompt"].to_numpy()[a],
            "is_instrumental": instrumental[a] & instrumental[b],
            "preference": preference,
            "voter": _voters(n, rng),
            "p_a": probs["p_a"],
        }
    )


def _draw_pairs(clips: pd.DataFrame, n: int, rng: np.random.Generator):
    """Row indices ``(a, b)``, ``[n]`` each: different systems, same prompt where possible."""
    prompt_codes = pd.factorize(clips["prompt"])[0]
    system_codes = pd.factorize(clips["system"])[0]
    size = np.bincount(prompt_codes)
    first = np.concatenate([[0], np.cumsum(size)[:-1]])  # rows are sorted by prompt
    a = rng.integers(len(clips), size=n)
    group, offset = prompt_codes[a], a - first[prompt_codes[a]]
    # Another clip of the same prompt: shift by 1..size-1 within the group (never itself).
    shift = 1 + (rng.random(n) * np.maximum(size[group] - 1, 1)).astype(int)
    b = first[group] + (offset + shift) % size[group]
    for _ in range(64):  # same-prompt partner of the same system, or none: redraw anywhere
        bad = system_codes[a] == system_codes[b]
        if not bad.any():
            break
        b[bad] = rng.integers(len(clips), size=int(bad.sum()))
    else:
        raise ValueError("could not find clips of different systems to pair; check metadata.")
    return a, b


def _timestamps(n: int, rng: np.random.Generator) -> pd.Series:
    gaps_ms = np.maximum(1, np.round(rng.exponential(MEAN_GAP_S * 1000.0, n))).astype(np.int64)
    return pd.Series(pd.Timestamp(DEFAULT_START) + pd.to_timedelta(np.cumsum(gaps_ms), unit="ms"))


def _voters(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pseudonyms with heavy-tailed activity: a few voters cast many of the votes."""
    count = max(3, int(2 * np.sqrt(max(n, 1))))
    weights = 1.0 / np.arange(1, count + 1) ** 1.1
    ids = rng.choice(count, size=n, p=weights / weights.sum())
    return np.array([f"demo-voter-{i:04d}" for i in range(count)])[ids]


def loudness_biased_votes(
    strengths: Mapping[str, float],
    mean_lufs: Mapping[str, float],
    *,
    effect_per_lu: float = 0.15,
    n_votes: int = 6000,
    seed: int = 0,
) -> pd.DataFrame:
    """Votes of :data:`ARENA` listeners biased by ``effect_per_lu`` logits per LU to the louder
    clip (played as generated) of two random systems. A clip's loudness is drawn around its
    system's ``mean_lufs`` (sd 3 LU), its length from 10-60 s, vocals with probability 1/2.
    Columns: ``system_a/_b``, ``preference``, ``loudness_a/_b``, ``duration_a/_b``,
    ``instrumental_a/_b``, ``is_instrumental``, ``source="simulated"`` and empty ``flags``."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    pick = np.array([rng.choice(len(names), size=2, replace=False) for _ in range(n_votes)])
    sa, sb = [names[i] for i in pick[:, 0]], [names[i] for i in pick[:, 1]]
    la = np.array([mean_lufs[s] for s in sa]) + rng.normal(0, 3, n_votes)
    lb = np.array([mean_lufs[s] for s in sb]) + rng.normal(0, 3, n_votes)
    ua, ub = [strengths[s] for s in sa], [strengths[s] for s in sb]
    pref = choose(outcome_probabilities(ua, ub, ARENA, effect_per_lu * (la - lb)), rng)
    inst_a, inst_b = rng.random(n_votes) < 0.5, rng.random(n_votes) < 0.5
    return pd.DataFrame(
        {
            "system_a": sa,
            "system_b": sb,
            "preference": pref,
            "loudness_a": la,
            "loudness_b": lb,
            "duration_a": rng.uniform(10, 60, n_votes),
            "duration_b": rng.uniform(10, 60, n_votes),
            "instrumental_a": inst_a,
            "instrumental_b": inst_b,
            "is_instrumental": inst_a & inst_b,
            "source": "simulated",
            "flags": "",
        }
    )

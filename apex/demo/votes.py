"""Simulated arena votes on demo clips, from a Bradley-Terry model on the latent quality.

For a battle between clips A and B with latent qualities ``qa`` and ``qb`` (metadata column
``quality``, about the 1-5 scale):

- ``P(BOTH_BAD) = BOTH_BAD_MAX * sigmoid(BOTH_BAD_SLOPE * (BOTH_BAD_BELOW - max(qa, qb)))`` — more
  likely when even the better clip is poor;
- otherwise ``P(TIE) = TIE_BASE + TIE_CLOSE * exp(-((qa - qb) / TIE_WIDTH) ** 2)`` — more likely
  when the clips are close;
- otherwise A wins with ``p_a = sigmoid(BT_SCALE * (qa - qb))`` (the Bradley-Terry probability).

Pairs are two clips of different systems on the same prompt where the metadata has one, else two
clips of different systems anywhere. Voters are simulated pseudonyms with heavy-tailed activity;
timestamps increase with exponential gaps. Everything is deterministic for a seed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import numpy as np
import pandas as pd

from apex.tasks import PREFERENCES

#: The order outcomes are drawn in from one uniform number (the seeded stream depends on it):
#: :data:`apex.tasks.PREFERENCES` rearranged, never a list of its own.
_DRAW_ORDER: tuple[str, ...] = tuple(PREFERENCES[i] for i in (3, 2, 0, 1))

BT_SCALE = 1.5  # logits per quality point
BOTH_BAD_MAX, BOTH_BAD_SLOPE, BOTH_BAD_BELOW = 0.6, 4.0, 2.6
TIE_BASE, TIE_CLOSE, TIE_WIDTH = 0.08, 0.15, 0.5
MEAN_GAP_S = 45.0  # mean seconds between consecutive votes
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


def outcome_probabilities(qa: np.ndarray, qb: np.ndarray) -> dict[str, np.ndarray]:
    """The latent model: probabilities of each preference for battles with these qualities.

    Args:
        qa: ``[N]`` latent quality of clip A.
        qb: ``[N]`` latent quality of clip B.

    Returns:
        ``{"A", "B", "TIE", "BOTH_BAD"}`` -> ``[N]`` probabilities summing to 1, plus ``"p_a"``
        (``[N]``, P(A beats B) in a decisive vote).
    """
    qa, qb = np.asarray(qa, dtype=float), np.asarray(qb, dtype=float)
    p_a = 1.0 / (1.0 + np.exp(-BT_SCALE * (qa - qb)))
    worst = np.maximum(qa, qb)
    both_bad = BOTH_BAD_MAX / (1.0 + np.exp(-BOTH_BAD_SLOPE * (BOTH_BAD_BELOW - worst)))
    tie = (1.0 - both_bad) * (TIE_BASE + TIE_CLOSE * np.exp(-(((qa - qb) / TIE_WIDTH) ** 2)))
    decisive = 1.0 - both_bad - tie
    return {
        "A": decisive * p_a,
        "B": decisive * (1 - p_a),
        "TIE": tie,
        "BOTH_BAD": both_bad,
        "p_a": p_a,
    }


def simulate_votes(
    metadata: pd.DataFrame,
    n: int,
    *,
    seed: int = 0,
    start: datetime | str | None = None,
) -> pd.DataFrame:
    """Simulate ``n`` arena votes on the clips of ``metadata``.

    Args:
        metadata: One row per clip with at least ``clip_id``, ``system``, ``prompt``,
            ``is_instrumental`` and ``quality`` (as from :func:`apex.demo.load_metadata`).
        n: Number of votes (>= 0).
        seed: Seed; the same inputs and seed give the same table.
        start: Time of the first vote (UTC if naive); default 2026-01-01 00:00 UTC, fixed so
            results do not depend on the clock.

    Returns:
        ``n`` rows with :data:`VOTE_COLUMNS`: ``timestamp`` is tz-aware UTC and strictly
        increasing; ``preference`` is ``"A"``, ``"B"``, ``"TIE"`` or ``"BOTH_BAD"``; ``p_a`` is
        the latent P(A beats B) of a decisive vote.

    Raises:
        ValueError: ``n`` < 0, missing columns, or fewer than two systems.
    """
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
    qa, qb = clips["quality"].to_numpy(float)[a], clips["quality"].to_numpy(float)[b]
    probs = outcome_probabilities(qa, qb)
    cumulative = np.cumsum([probs[k] for k in _DRAW_ORDER[:-1]], axis=0)
    u = rng.random(n)
    choice = (u[None, :] >= cumulative).sum(axis=0)  # index into _DRAW_ORDER
    preference = np.array(_DRAW_ORDER)[choice]
    instrumental = clips["is_instrumental"].to_numpy(bool)
    return pd.DataFrame(
        {
            "battle_uuid": [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)],
            "timestamp": _timestamps(n, rng, start),
            "clip_a": clips["clip_id"].to_numpy()[a],
            "clip_b": clips["clip_id"].to_numpy()[b],
            "system_a": clips["system"].to_numpy()[a],
            "system_b": clips["system"].to_numpy()[b],
            "prompt": clips["prompt"].to_numpy()[a],
            "is_instrumental": instrumental[a] & instrumental[b],
            "preference": preference,
            "voter": _voters(n, rng),
            "p_a": probs["p_a"],
        },
        columns=list(VOTE_COLUMNS),
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


def _timestamps(n: int, rng: np.random.Generator, start: datetime | str | None) -> pd.Series:
    origin = pd.Timestamp(DEFAULT_START if start is None else start)
    origin = origin.tz_localize("UTC") if origin.tzinfo is None else origin.tz_convert("UTC")
    gaps_ms = np.maximum(1, np.round(rng.exponential(MEAN_GAP_S * 1000.0, n))).astype(np.int64)
    return pd.Series(origin + pd.to_timedelta(np.cumsum(gaps_ms), unit="ms"))


def _voters(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pseudonyms with heavy-tailed activity: a few voters cast many of the votes."""
    count = max(3, int(2 * np.sqrt(max(n, 1))))
    weights = 1.0 / np.arange(1, count + 1) ** 1.1
    ids = rng.choice(count, size=n, p=weights / weights.sum())
    return np.array([f"demo-voter-{i:04d}" for i in range(count)])[ids]

"""Bradley-Terry ratings of generating systems, with bootstrap or closed-form intervals: votes
counted per unordered system pair (a tie half a win each way, BOTH_BAD dropped), solved by
:func:`apex.logistic.solve` (``l2=C``: scikit-learn's ``LogisticRegression(C=C,
fit_intercept=False)``). Ratings are ``1000 + w * 400 / ln 10`` points (400 points: 10:1 odds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import expit

from apex.logistic import Pairs, covariance, solve
from apex.tasks import A_WIN_SHARE, PREFERENCES

INIT_RATING = 1000.0  # mean rating of every board (points)
POINTS_PER_NAT = 400.0 / math.log(10.0)  # Elo points per nat of logit

_CELLS_PER_CHUNK = 4_000_000  # bounds bootstrap memory: rounds x pairs x systems per chunk


def a_win_share(preferences: pd.Series) -> np.ndarray:
    """``[N]`` share of the win clip A gets per vote (A 1, TIE 0.5, B 0; NaN for BOTH_BAD);
    ValueError naming any value outside :data:`apex.tasks.PREFERENCES`."""
    values = preferences.to_numpy(dtype=object)
    unknown = sorted({str(v) for v in values if v not in PREFERENCES})
    if unknown:
        raise ValueError(
            f"unknown preference value(s) {unknown}; expected one of {list(PREFERENCES)}"
        )
    return np.array([A_WIN_SHARE.get(v, np.nan) for v in values], dtype=np.float64)


@dataclass(frozen=True)
class _PairTable:
    """One row per unordered system pair ``i < j`` that met in a rated battle: ``counts[p] =
    (wins of i, ties, wins of j)``; ``soft[p]``: (predictions, their sum for i) when asked."""

    systems: tuple[str, ...]
    i: np.ndarray  # [P] int
    j: np.ndarray  # [P] int
    counts: np.ndarray  # [P, 3] float64
    soft: np.ndarray | None = None  # [P, 2] float64

    @property
    def pairs(self) -> Pairs:
        return Pairs(self.i, self.j, len(self.systems))


def require_columns(table: pd.DataFrame, columns: tuple[str, ...], what: str = "votes") -> None:
    """Refuse a ``what`` table that lacks any of ``columns``, naming them."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the {what} table lacks column(s) {missing}; it needs {list(columns)}")


def _aggregate(battles: pd.DataFrame, soft: str | None = None) -> _PairTable:
    """Count (pair, outcome) cells, validating the table; ``soft``: a column of per-vote
    probabilities that A wins (e.g. ``apex_p_a``) to sum per pair too."""
    require_columns(battles, ("system_a", "system_b", "preference"))
    share = a_win_share(battles["preference"])
    # Outcome of the first-listed system: 0 win, 1 tie, 2 loss, -1 unrated (BOTH_BAD).
    outcome = np.where(np.isnan(share), -1, np.rint(2.0 * (1.0 - np.nan_to_num(share))))
    outcome = outcome.astype(np.int64)
    both = pd.concat([battles["system_a"], battles["system_b"]], ignore_index=True)
    if both.isna().any():
        raise ValueError("system_a/system_b contain missing values; drop those battles first")
    codes, systems = pd.factorize(both, sort=True)
    n = len(battles)
    a, b = codes[:n].astype(np.int64), codes[n:].astype(np.int64)
    if np.any(a == b):
        raise ValueError("some battles pit a system against itself; remove them")
    keep = outcome >= 0
    a, b, outcome = a[keep], b[keep], outcome[keep]
    # Orient every battle so i < j; the loser/winner code flips when A was the larger index.
    flip = a > b
    i, j = np.where(flip, b, a), np.where(flip, a, b)
    outcome = np.where(flip, 2 - outcome, outcome)
    k = len(systems)
    keys = (i * k + j) * 3 + outcome
    if k * k * 3 <= 10_000_000:
        table = np.bincount(keys, minlength=k * k * 3).reshape(k * k, 3)
        pair_ids = np.flatnonzero(table.sum(axis=1))
        counts = table[pair_ids]
    else:  # many systems: a dense table would be mostly empty
        uniq, cnt = np.unique(keys, return_counts=True)
        pair_ids, inverse = np.unique(uniq // 3, return_inverse=True)
        counts = np.zeros((len(pair_ids), 3), dtype=np.int64)
        counts[inverse, uniq % 3] = cnt
    sums = None
    if soft is not None:  # NaN (no prediction) counts nothing
        p = battles[soft].to_numpy(dtype=np.float64)[keep]
        p, at = np.where(flip, 1.0 - p, p), np.searchsorted(pair_ids, i * k + j)
        ok = ~np.isnan(p)
        size = len(pair_ids)
        sums = np.stack([np.bincount(at[ok], minlength=size), np.bincount(at[ok], p[ok], size)], 1)
    return _PairTable(
        tuple(str(s) for s in systems), pair_ids // k, pair_ids % k, counts.astype(np.float64), sums
    )


def _votes_per_system(table: _PairTable) -> np.ndarray:
    """``[K]`` rated battles per system."""
    n = table.counts.sum(axis=1)
    votes = np.bincount(table.i, weights=n, minlength=len(table.systems))
    votes += np.bincount(table.j, weights=n, minlength=len(table.systems))
    return votes.astype(np.int64)


def _drop_below(table: _PairTable, min_votes: int) -> _PairTable:
    """Drop systems under ``min_votes`` rated battles, with their battles, until stable."""
    while True:
        votes = _votes_per_system(table)
        keep = votes >= min_votes
        if keep.all():
            return table
        new_index = np.cumsum(keep) - 1
        pairs = keep[table.i] & keep[table.j]
        table = _PairTable(
            systems=tuple(s for s, k in zip(table.systems, keep, strict=True) if k),
            i=new_index[table.i[pairs]],
            j=new_index[table.j[pairs]],
            counts=table.counts[pairs],
        )


def check_fit_options(l2, bootstrap_rounds: int, interval: str, intervals: tuple) -> None:
    """Refuse a non-positive ``l2``, negative ``bootstrap_rounds`` or an unknown ``interval``."""
    if l2 is not None and not l2 > 0:
        raise ValueError(f"l2 is scikit-learn's C and must be positive (or None), got {l2!r}")
    if bootstrap_rounds < 0:
        raise ValueError(f"bootstrap_rounds must be >= 0, got {bootstrap_rounds}")
    if interval not in intervals:
        raise ValueError(f"interval must be one of {', '.join(intervals)}, got {interval!r}")


def l2_precision(l2: float | None) -> float:
    """Prior precision of scikit-learn's ``C`` (ridge ``||w||^2 / (2C)``); 0 for None."""
    return 0.0 if l2 is None else 1.0 / float(l2)


def solve_counts(pairs: Pairs, counts: np.ndarray, precision, centre=None) -> np.ndarray:
    """``[B, K]`` centred strengths (nats) from ``[B, P, 3]`` counts of ``pairs``."""
    n, s = counts.sum(axis=2), counts[..., 0] + 0.5 * counts[..., 1]
    return solve(pairs, n, s, precision=precision, centre=centre, flat=pairs.k)


def rating_cov(theta: np.ndarray, table: _PairTable, precision: float, robust: bool) -> np.ndarray:
    """Covariance of the centred strengths, ``[K, K]`` nats^2. ``robust``: the sandwich ``A^-1 B
    A^-1`` (LMArena's default; ``A`` the Hessian, ``B`` the sum of ``(y - p)^2 x x^T``). Else
    ``A^-1``, the ridge read as a ``N(0, C)`` prior: it also spans the ridge's pull to the mean,
    which the sandwich and the bootstrap miss on young boards."""
    counts = table.counts
    p = expit(theta[table.i] - theta[table.j])
    meat = counts[:, 0] * (1 - p) ** 2 + counts[:, 1] * (0.5 - p) ** 2 + counts[:, 2] * p**2
    weight = counts.sum(axis=1) * p * (1 - p)
    return covariance(table.pairs, weight, precision, len(theta), meat if robust else None)


def fit_bradley_terry(
    battles: pd.DataFrame,
    *,
    l2: float | None = None,
    bootstrap_rounds: int = 0,
    seed: int = 0,
    min_votes: int = 0,
    anchor: tuple[str, float] | None = None,
    interval: Literal["bootstrap", "sandwich", "posterior"] = "bootstrap",
) -> pd.DataFrame:
    """Bradley-Terry ratings of systems from pairwise votes (see the module doc), as
    :func:`ratings_table`: ``rating``, ``ci_low``, ``ci_high`` (points, 95%), ``votes``.

    ``l2``: None for maximum likelihood (an unbeaten system comes out very large), else ``C``
    (Music Arena uses 1.0). ``interval``: ``"bootstrap"`` percentiles of ``bootstrap_rounds``
    multinomial resamples of the pair counts (0: ``ci_*`` NaN), or ``"sandwich"`` /
    ``"posterior"``: rating +- 1.96 SEs of :func:`rating_cov`. Systems under ``min_votes`` rated
    battles are dropped with their battles, repeatedly. ``anchor``: ``(system, rating)`` to
    shift the board to (default: mean rating 1000).
    """
    check_fit_options(l2, bootstrap_rounds, interval, ("bootstrap", "sandwich", "posterior"))
    # A system seen only in BOTH_BAD battles has no rating at all: it is left out.
    table = _drop_below(_aggregate(battles), max(min_votes, 1))
    k = len(table.systems)
    rating = ci_low = ci_high = np.full(k, np.nan)
    if k:
        theta = solve_counts(table.pairs, table.counts[None], l2_precision(l2))[0]
        rating = INIT_RATING + POINTS_PER_NAT * theta
        if interval != "bootstrap":
            cov = rating_cov(theta, table, l2_precision(l2), robust=interval == "sandwich")
            half = 1.96 * POINTS_PER_NAT * np.sqrt(np.maximum(np.diag(cov), 0.0))
            ci_low, ci_high = rating - half, rating + half
        elif bootstrap_rounds > 0:
            boot = _bootstrap(table, l2, bootstrap_rounds, seed)
            ci_low, ci_high = np.percentile(boot, [2.5, 97.5], axis=0)
    if anchor is not None:
        name, value = anchor
        if name not in table.systems:
            raise ValueError(f"anchor system {name!r} is not among the rated systems")
        shift = float(value) - rating[table.systems.index(name)]
        rating, ci_low, ci_high = rating + shift, ci_low + shift, ci_high + shift
    return ratings_table(table.systems, rating, ci_low, ci_high, _votes_per_system(table))


def ratings_table(systems, rating, low, high, votes, **extra) -> pd.DataFrame:
    """A board: index ``system``, best first; ``rating``, ``ci_low``, ``ci_high``, ``votes`` and
    ``extra`` columns, each ``[K]`` in ``systems`` order."""
    columns = {"rating": rating, "ci_low": low, "ci_high": high, "votes": votes, **extra}
    table = pd.DataFrame(columns, index=pd.Index([str(s) for s in systems], name="system"))
    return table.astype({"votes": np.int64}).sort_values("rating", ascending=False, kind="stable")


def _bootstrap(table: _PairTable, l2: float | None, rounds: int, seed: int) -> np.ndarray:
    """``[rounds, K]`` ratings (points) from multinomial resamples of the cells."""
    cells = table.counts.ravel()
    total = int(cells.sum())
    rng = np.random.default_rng(seed)
    pairs, k = len(table.i), len(table.systems)
    chunk = max(1, _CELLS_PER_CHUNK // max(1, pairs * k))
    sizes = [min(chunk, rounds - start) for start in range(0, rounds, chunk)]
    draws = (rng.multinomial(total, cells / total, size=n).reshape(n, pairs, 3) for n in sizes)
    fits = [solve_counts(table.pairs, d.astype(np.float64), l2_precision(l2)) for d in draws]
    return INIT_RATING + POINTS_PER_NAT * np.concatenate(fits, axis=0)

"""Bradley-Terry ratings of generating systems with bootstrap or closed-form intervals.

Pure numpy functions over a battles table (one row per vote) with columns ``system_a``,
``system_b`` and ``preference`` (``"A"``, ``"B"``, ``"TIE"``, ``"BOTH_BAD"``).

The fit never loops over rows: battles are first aggregated into one row per unordered system
pair with three counts (first system wins, tie, second system wins); the likelihood only depends
on those counts. A tie counts as half a win each way; ``BOTH_BAD`` says nothing about which clip
is better and is dropped. The K-dimensional problem is solved by damped Newton steps (the
Hessian is K x K); bootstrap rounds resample the count table with one multinomial draw per
round (as FastChat's ``compute_bootstrap_bt``) and are solved at once; the sandwich and
posterior intervals (:func:`rating_cov`) are closed form.

Two conventions, so either published leaderboard can be reproduced:

- ``l2=None``: unregularised maximum likelihood, as FastChat's ``compute_bt`` (scipy L-BFGS
  started at zero, whose iterates stay mean-zero because every gradient sums to zero).
- ``l2=C``: the minimiser of ``0.5 * ||w||^2 + C * sum_rows weight * logloss`` that scikit-learn's
  ``LogisticRegression(C=C, fit_intercept=False)`` finds on Music Arena's expanded rows (one row
  per battle with +1/-1 indicator features, a tie as two rows of weight 0.5, labels 1 and 0).

Ratings are on the Elo scale: ``1000 + w * 400 / ln 10`` points, so a 400-point gap means 10:1
odds, and the mean rating is 1000 (both optima are already mean-zero in ``w``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from apex.tasks import A_WIN_SHARE, PREFERENCES

INIT_RATING = 1000.0  # mean rating of every board (points)
POINTS_PER_NAT = 400.0 / math.log(10.0)
"""Elo points per unit of logit: a 400-point gap is odds of 10 to 1."""

_MAX_ITER = 100
_STEP_TOL = 1e-10  # nats; far below the 0.01-point (6e-5 nat) agreement we promise
_CELLS_PER_CHUNK = 4_000_000  # bounds bootstrap memory: rounds x pairs x systems per chunk


def a_win_share(preferences: pd.Series) -> np.ndarray:
    """``[N]`` share of the win clip A gets per vote (:data:`apex.tasks.A_WIN_SHARE`: A 1, TIE
    0.5, B 0), NaN for BOTH_BAD (kept in the data, rates nobody).

    Raises:
        ValueError: a value outside :data:`apex.tasks.PREFERENCES`, naming it.
    """
    values = preferences.to_numpy(dtype=object)
    unknown = sorted({str(v) for v in values if v not in PREFERENCES})
    if unknown:
        raise ValueError(
            f"unknown preference value(s) {unknown}; expected one of {list(PREFERENCES)}"
        )
    return np.array([A_WIN_SHARE.get(v, np.nan) for v in values], dtype=np.float64)


def armijo_step(
    objective: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    step: np.ndarray,
    grad: np.ndarray,
    f: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Backtracking (Armijo) line search per bootstrap round: plain Newton can overshoot on
    lopsided records. ``x``, ``step``, ``grad``: ``[B, D]``; ``f``: ``[B]`` objective at ``x``.

    Returns:
        ``(t, f_new)``: ``[B]`` step lengths (0 for a round already at its optimum to machine
        precision) and the objective at ``x + t * step``.
    """
    slope = (grad * step).sum(axis=1)
    t = np.ones(x.shape[0])
    slack = 1e-12 * np.abs(f)  # rounding noise once converged
    for _ in range(40):
        f_new = objective(x + t[:, None] * step)
        bad = ~(f_new <= f + 1e-4 * t * slope + slack)
        if not bad.any():
            break
        t = np.where(bad, 0.5 * t, t)
    else:  # no decrease found: this round is at its optimum to machine precision
        t = np.where(bad, 0.0, t)
        f_new = np.where(bad, f, f_new)
    return t, f_new


@dataclass(frozen=True)
class _PairTable:
    """One row per unordered system pair ``i < j`` that met in a rated battle: ``counts[p] =
    (wins of i, ties, wins of j)``; ``soft[p]``: (predictions, their sum for i) when asked."""

    systems: tuple[str, ...]
    i: np.ndarray  # [P] int
    j: np.ndarray  # [P] int
    counts: np.ndarray  # [P, 3] float64
    soft: np.ndarray | None = None  # [P, 2] float64


def require_columns(table: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Refuse a votes table that lacks any of ``columns``, naming them."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the votes table lacks column(s) {missing}; it needs {list(columns)}")


def _aggregate(battles: pd.DataFrame, soft: str | None = None) -> _PairTable:
    """Count (pair, outcome) cells with vectorised numpy; validates the input table. ``soft``: a
    column of per-vote probabilities that A wins (e.g. ``apex_p_a``) to sum per pair too."""
    require_columns(battles, ("system_a", "system_b", "preference"))
    share = a_win_share(battles["preference"])
    # Outcome code from the first-listed system's point of view: 0 = win, 1 = tie, 2 = loss;
    # -1 = unrated (BOTH_BAD).
    outcome = np.where(np.isnan(share), -1, np.rint(2.0 * (1.0 - np.nan_to_num(share))))
    outcome = outcome.astype(np.int64)
    both = pd.concat([battles["system_a"], battles["system_b"]], ignore_index=True)
    if both.isna().any():
        raise ValueError("system_a/system_b contain missing values; drop those battles first")
    codes, systems = pd.factorize(both, sort=True)
    n = len(battles)
    a, b = codes[:n].astype(np.int64), codes[n:].astype(np.int64)
    if np.any(a == b):
        raise ValueError(
            "some battles pit a system against itself; such votes carry no "
            "information about ratings, remove them"
        )
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
    """Rated battles each system took part in: ``[K]`` int."""
    n = table.counts.sum(axis=1)
    votes = np.bincount(table.i, weights=n, minlength=len(table.systems))
    votes += np.bincount(table.j, weights=n, minlength=len(table.systems))
    return votes.astype(np.int64)


def _drop_below(table: _PairTable, min_votes: int) -> _PairTable:
    """Remove systems with fewer than ``min_votes`` rated battles, and their battles, until
    stable (their opponents lose votes too; a board never shows a system under it)."""
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


def _objective(theta, n, s, i, j, precision, centre):
    """``[B]`` negative log-likelihood + Gaussian prior (shapes as in :func:`_solve`)."""
    d = theta[:, i] - theta[:, j]
    nll = (s * np.logaddexp(0.0, -d) + (n - s) * np.logaddexp(0.0, d)).sum(axis=1)
    return nll + 0.5 * (precision * (theta - centre) ** 2).sum(axis=1)


def pair_hessian(weight: np.ndarray, i: np.ndarray, j: np.ndarray, k: int) -> np.ndarray:
    """``[B, K, K]``: sum over the distinct pairs ``(i, j)`` of ``weight * x x^T``, ``x = e_i -
    e_j``; ``weight`` ``[B, P]`` (the likelihood's Hessian: ``n p (1 - p)`` per pair)."""
    hess = np.zeros((weight.shape[0], k, k))
    hess[:, i, j] = hess[:, j, i] = -weight
    hess[:, np.arange(k), np.arange(k)] = -hess.sum(axis=2)
    return hess


def l2_precision(l2: float | None) -> float:
    """Prior precision of scikit-learn's ``C`` (ridge ``||w||^2 / (2C)``); 0 for None."""
    return 0.0 if l2 is None else 1.0 / float(l2)


def _solve(
    n: np.ndarray,
    s: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    k: int,
    precision: float | np.ndarray,
    centre: np.ndarray | None = None,
) -> np.ndarray:
    """Batched damped Newton: minimises ``nll(theta) + 0.5 * precision * ||theta - centre||^2``.

    The plain fits are ``centre = 0`` with ``precision = 1 / C`` (:func:`l2_precision`) or 0
    (maximum likelihood); :mod:`annotation.informed` centres it on APEX's predicted strengths.
    ``n``, ``s``: ``[B, P]`` battles and first-system score (wins + 0.5 ties) per pair, B
    independent problems (bootstrap rounds, prior settings); ``i``, ``j``: ``[P]`` the pairs'
    systems; ``precision``: scalar or ``[B, K]`` (1 / nats^2); ``centre``: ``[K]`` or ``[B, K]``
    (nats, mean zero). Returns ``[B, K]`` strengths in nats, mean zero per round.
    """
    rounds, diag = n.shape[0], np.arange(k)
    precision = np.broadcast_to(np.asarray(precision, dtype=np.float64), (rounds, k))
    centre = np.broadcast_to(np.zeros(k) if centre is None else centre, (rounds, k))
    # Without a prior the likelihood is flat along (1, ..., 1); adding 11^T/K fixes that
    # direction without moving the optimum because every gradient is orthogonal to it. The
    # tiny diagonal keeps disconnected comparison graphs solvable.
    fix = np.zeros((rounds, k, k)) + (precision.max(axis=1) == 0.0)[:, None, None] / k
    fix[:, diag, diag] += precision + 1e-9
    theta = np.array(centre, dtype=np.float64)

    def objective(x: np.ndarray) -> np.ndarray:
        return _objective(x, n, s, i, j, precision, centre)

    incidence = np.zeros((len(i), k))
    incidence[np.arange(len(i)), i], incidence[np.arange(len(j)), j] = 1.0, -1.0
    f = objective(theta)
    for _ in range(_MAX_ITER):
        p = 1.0 / (1.0 + np.exp(-(theta[:, i] - theta[:, j])))
        grad = (n * p - s) @ incidence + precision * (theta - centre)
        hess = pair_hessian(n * p * (1.0 - p), i, j, k) + fix
        step = -np.linalg.solve(hess, grad[..., None])[..., 0]
        t, f = armijo_step(objective, theta, step, grad, f)
        theta = theta + t[:, None] * step
        if np.max(np.abs(t[:, None] * step), initial=0.0) < _STEP_TOL:
            break
    return theta - theta.mean(axis=1, keepdims=True)


def rating_cov(theta: np.ndarray, table: _PairTable, precision: float, robust: bool) -> np.ndarray:
    """Covariance of the centred strengths, ``[K, K]`` nats^2. ``robust``: the sandwich ``A^-1 B
    A^-1`` (LMArena ``arena-rank``'s default since July 2025), ``A`` the objective's Hessian, ``B``
    the sum over votes of ``(y - p)^2 x x^T`` (y: 1, 0.5, 0) from the pair counts; ties make ``B``
    smaller than ``A``, as the bootstrap sees too. Else ``A^-1``: the posterior of the ridge read
    as a ``N(0, C)`` prior, which also spans the ridge's pull to the mean (the sandwich and the
    bootstrap do not, and under-cover on young boards)."""
    k = len(table.systems)
    counts = table.counts
    p = 1.0 / (1.0 + np.exp(-(theta[table.i] - theta[table.j])))
    n = counts.sum(axis=1)
    meat_w = counts[:, 0] * (1 - p) ** 2 + counts[:, 1] * (0.5 - p) ** 2 + counts[:, 2] * p**2
    hess = pair_hessian((n * p * (1 - p))[None], table.i, table.j, k)[0]
    meat = pair_hessian(meat_w[None], table.i, table.j, k)[0]
    centring = np.eye(k) - 1.0 / k
    bread = np.linalg.pinv(hess + precision * np.eye(k) + (precision == 0.0) / k)
    return centring @ (bread @ meat @ bread if robust else bread) @ centring


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
    """Fit Bradley-Terry ratings of systems from pairwise votes.

    Args:
        battles: one row per vote with ``system_a``, ``system_b``, ``preference``
            (``"A"``, ``"B"``, ``"TIE"``, ``"BOTH_BAD"``; BOTH_BAD rows are ignored).
        l2: None for unregularised maximum likelihood (FastChat's ``compute_bt``); a float ``C``
            to reproduce ``LogisticRegression(C=C, fit_intercept=False)`` on Music Arena's
            expanded rows (Music Arena uses ``C=1.0``). Unregularised ratings of a system that
            never lost (or never won) are not finite estimates and come out very large; use
            ``l2`` or ``min_votes`` on small data.
        bootstrap_rounds: bootstrap resamples of the battles for the interval (0: no interval,
            ``ci_low``/``ci_high`` NaN); ``seed``: their seed.
        min_votes: systems with fewer rated battles are dropped together with their battles
            (repeated until every remaining system has at least this many).
        anchor: optional ``(system, rating)``: shift all ratings (and intervals) so that this
            system has this rating, as FastChat anchors its board to a baseline model; by
            default the mean rating is 1000.
        interval: ``"bootstrap"`` (percentiles of ``bootstrap_rounds`` resamples) or
            ``"sandwich"`` / ``"posterior"`` (rating +- 1.96 SEs of :func:`rating_cov`; no
            rounds): equal within bootstrap noise on large boards; they are symmetric, the
            percentile bootstrap follows a lopsided record's skew on small ones.

    Returns:
        DataFrame indexed by ``system``, sorted by rating (descending), with ``rating``
        (points), ``ci_low``/``ci_high`` (95% interval, points) and
        ``votes`` (rated battles of the system used in the fit).
    """
    if l2 is not None and not l2 > 0:
        raise ValueError(f"l2 is scikit-learn's C and must be positive (or None), got {l2!r}")
    if bootstrap_rounds < 0:
        raise ValueError(f"bootstrap_rounds must be >= 0, got {bootstrap_rounds}")
    if interval not in ("bootstrap", "sandwich", "posterior"):
        raise ValueError(f"interval must be bootstrap, sandwich or posterior, got {interval!r}")
    # A system seen only in BOTH_BAD battles has no rating at all: it is left out.
    table = _drop_below(_aggregate(battles), max(min_votes, 1))
    k = len(table.systems)
    rating = ci_low = ci_high = np.full(k, np.nan)
    if k:
        counts = table.counts
        n, s = counts.sum(axis=1), counts[:, 0] + 0.5 * counts[:, 1]
        theta = _solve(n[None], s[None], table.i, table.j, k, l2_precision(l2))[0]
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
    result = pd.DataFrame(
        {"rating": rating, "ci_low": ci_low, "ci_high": ci_high, "votes": _votes_per_system(table)},
        index=pd.Index(table.systems, name="system", dtype=object),
    )
    return result.sort_values(["rating"], ascending=False, kind="stable")


def _bootstrap(table: _PairTable, l2: float | None, rounds: int, seed: int) -> np.ndarray:
    """Bootstrap ratings ``[rounds, K]`` (points) from multinomial resamples of the cells."""
    cells = table.counts.ravel()
    total = int(cells.sum())
    rng = np.random.default_rng(seed)
    pairs, k = len(table.i), len(table.systems)
    chunk = max(1, _CELLS_PER_CHUNK // max(1, pairs * k))
    out = []
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        draw = rng.multinomial(total, cells / total, size=size).reshape(size, pairs, 3)
        draw = draw.astype(np.float64)
        n, s = draw.sum(axis=2), draw[:, :, 0] + 0.5 * draw[:, :, 1]
        out.append(_solve(n, s, table.i, table.j, k, l2_precision(l2)))
    return INIT_RATING + POINTS_PER_NAT * np.concatenate(out, axis=0)

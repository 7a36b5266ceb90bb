"""APEX-informed Bradley-Terry: a board that starts from what the quality model already knows.

As Polyrating (arXiv 2409.00696), a MAP fit with ``theta_k ~ N(beta * m_k, tau^2)``, ``m_k`` APEX's
strength of system k (:func:`apex_strengths`), averaged over a ``(beta, tau)`` grid weighted by the
Laplace marginal likelihood, so the intervals carry the uncertainty about both; when listeners
disagree with APEX the weight moves to ``beta`` near 0 and a wrong prior costs little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logsumexp

from annotation.ratings import (
    INIT_RATING,
    POINTS_PER_NAT,
    _aggregate,
    _PairTable,
    _votes_per_system,
    l2_precision,
    ratings_table,
    require_columns,
    solve_counts,
)
from apex.logistic import Pairs, hessian, objective, solve

#: APEX scale ``beta`` grid: never below 0 (an anti-correlated model is broken, not inverted);
#: symmetric around 1, so with no votes the fit is APEX's strengths.
SCALE_GRID = np.linspace(0.0, 2.0, 9)
SD_GRID = np.geomspace(0.05, 4.0, 12)  # prior SD ``tau``, nats (0.05: 9 points; 4: 700 points)
PROVISIONAL_VOTES = 30  # below this many rated votes a system's rating is provisional
SD_SCALE = 1.0  # nats, of the hyperprior on ``tau`` and the systems' spread (_log_hyperprior)
_APEX_RIDGE = 1e-2  # keeps APEX's own fit finite if it is certain about a system


@dataclass(frozen=True)
class InformedFit:
    """``ratings`` (95% posterior intervals) plus ``apex`` (APEX's rating, points; NaN without
    predictions); ``weight``: posterior mean of ``beta`` (0: APEX ignored, 1: taken as is);
    ``prior_votes``: the votes between equal systems the prior is worth, ``4 / tau^2`` at the
    geometric posterior mean of ``1 / tau^2`` (0 without predictions); ``centre``,
    ``precision``: ``[K]``, one prior standing for the grid (for :func:`flips_to_change_top`)."""

    ratings: pd.DataFrame
    weight: float
    prior_votes: float
    centre: pd.Series
    precision: pd.Series


def apex_strengths(votes: pd.DataFrame) -> pd.Series:
    """APEX's strength (nats, mean zero) of each system it predicted for: Bradley-Terry on the
    rated votes' ``apex_p_a`` as soft outcomes; ValueError without that column."""
    require_columns(votes, ("apex_p_a",))
    table = _aggregate(votes, soft="apex_p_a")
    k, count, score = len(table.systems), table.soft[:, 0], table.soft[:, 1]
    theta = solve(table.pairs, count[None], score[None], precision=_APEX_RIDGE)[0]
    seen = (np.bincount(table.i, count, k) + np.bincount(table.j, count, k)) > 0
    index = pd.Index([s for s, x in zip(table.systems, seen, strict=True) if x], name="system")
    return pd.Series(theta[seen] - theta[seen].mean() if seen.any() else [], index=index)


def _over(table: _PairTable, systems: list[str]) -> Pairs:
    """The table's pairs re-expressed over ``systems`` (a superset of its systems)."""
    where = {s: n for n, s in enumerate(systems)}
    index = np.array([where[s] for s in table.systems], dtype=np.int64)
    return Pairs(index[table.i], index[table.j], len(systems))


def fit_informed(
    votes: pd.DataFrame,
    prior: pd.Series | None = None,
    *,
    l2: float | None = None,
    weight: float | None = None,
    prior_sd: float | None = None,
) -> InformedFit:
    """Bradley-Terry with APEX's strengths as a Gaussian prior (see the module doc); systems
    APEX did not score get the grid's weakest prior, centred on the average. Assumes APEX's
    strengths exact and independent of these votes (a refit trained on them flatters the prior).

    ``votes``: ``system_a``, ``system_b``, ``preference`` (and ``apex_p_a`` without ``prior``);
    ``prior``: APEX's strength per system (nats; default :func:`apex_strengths`; its systems are
    rated too); ``l2``: an extra ridge (the plain fit's ``C``); ``weight``, ``prior_sd``: fix
    ``beta`` and ``tau`` (nats) instead of the grid (``prior_sd=inf``: the plain fit with ``l2``).
    """
    if (weight is None) != (prior_sd is None):
        raise ValueError("give both weight and prior_sd to fix the prior, or neither")
    table = _aggregate(votes)
    prior = apex_strengths(votes) if prior is None else prior.astype(np.float64)
    prior.index = prior.index.map(str)
    systems = sorted(set(table.systems) | set(prior.index[prior.notna()]))
    k = len(systems)
    has = prior.reindex(systems).notna().to_numpy()
    m = prior.reindex(systems).to_numpy()
    m = np.where(has, m - (m[has].mean() if has.any() else 0.0), 0.0)
    if weight is None:
        beta, sd = (g.ravel() for g in np.meshgrid(SCALE_GRID, SD_GRID, indexing="ij"))
        floor = 1.0 / SD_GRID[-1] ** 2
    else:
        beta, sd, floor = np.array([float(weight)]), np.array([float(prior_sd)]), 0.0
    lam = 1.0 / sd**2  # [B]
    q = l2_precision(l2) + np.where(has, lam[:, None], floor)  # [B, K]
    centre = np.divide(lam[:, None] * beta[:, None] * m, q, out=np.zeros_like(q), where=q > 0)
    theta, var, evidence = _laplace(table, _over(table, systems), q, centre)
    if weight is None:
        evidence += _log_hyperprior(beta, sd, m[has])
    post = np.exp(evidence - evidence.max())
    post /= post.sum()
    mean = post @ theta  # Bayesian model averaging over the grid
    var = post @ (var + theta**2) - mean**2
    half = 1.96 * POINTS_PER_NAT * np.sqrt(np.maximum(var, 0.0))
    rating = INIT_RATING + POINTS_PER_NAT * mean
    votes_k = np.zeros(k, dtype=np.int64)
    votes_k[[systems.index(x) for x in table.systems]] = _votes_per_system(table)
    apex = np.where(has, INIT_RATING + POINTS_PER_NAT * m, np.nan)
    ratings = ratings_table(systems, rating, rating - half, rating + half, votes_k, apex=apex)
    beta_bar, lam_bar = float(post @ beta), float(np.exp(post @ np.log(np.maximum(lam, 1e-300))))
    q_bar = l2_precision(l2) + np.where(has, lam_bar if np.isfinite(sd).all() else 0.0, floor)
    if not has.any():  # no APEX predictions: the grid only varied an unused scale
        post = np.zeros_like(post)
    centre_bar = np.divide(lam_bar * beta_bar * m, q_bar, where=q_bar > 0, out=np.zeros(k))
    prior_votes = 4.0 * lam_bar if post.any() else 0.0
    centre_bar, q_bar = pd.Series(centre_bar, index=systems), pd.Series(q_bar, index=systems)
    return InformedFit(ratings, float(post @ beta), prior_votes, centre_bar, q_bar)


def _log_hyperprior(beta: np.ndarray, sd: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``[B]`` log prior weight of each grid point ``(beta, tau)`` (``m``: APEX's centred m_k):
    ``tau`` half-Cauchy(SD_SCALE) times ``s^2 exp(-s / SD_SCALE)`` for the systems' prior spread
    ``s = sqrt(beta^2 mean(m^2) + tau^2)`` (boundary-avoiding, as Chung et al. 2013: a young
    board with ``beta`` near 0 is not shrunk as if the systems were alike), times ``tau`` (the
    log grid's Jacobian), normalised over ``tau`` for each ``beta`` (``beta`` stays uniform)."""
    spread = np.sqrt(beta**2 * (np.mean(m**2) if len(m) else 0.0) + sd**2) / SD_SCALE
    log_w = np.log(sd) - np.log1p((sd / SD_SCALE) ** 2) + 2.0 * np.log(spread) - spread
    log_w = log_w.reshape(len(SCALE_GRID), len(SD_GRID))
    return (log_w - logsumexp(log_w, axis=1, keepdims=True)).ravel()


def _laplace(table: _PairTable, pairs: Pairs, q: np.ndarray, centre: np.ndarray):
    """Per grid point: the centred MAP strengths ``[B, K]``, their posterior variances ``[B, K]``
    and the Laplace log marginal likelihood ``[B]`` (prior precision ``q``, centre ``[B, K]``)."""
    k = pairs.k
    n = np.broadcast_to(table.counts.sum(axis=1), (len(q), len(pairs.i)))
    s = np.broadcast_to(table.counts[:, 0] + 0.5 * table.counts[:, 1], n.shape)
    theta = solve(pairs, n, s, precision=q, centre=centre, flat=k)
    p = expit(theta[:, pairs.i] - theta[:, pairs.j])
    a = hessian(pairs, n * p * (1.0 - p), q, k)
    evidence = -objective(pairs, n, s, theta, q, centre) - 0.5 * np.linalg.slogdet(a)[1]
    evidence += 0.5 * np.log(np.where(q > 0, q, 1.0)).sum(axis=1)
    centring = np.eye(k) - 1.0 / k
    var = np.diagonal(centring @ np.linalg.inv(a) @ centring, axis1=1, axis2=2)
    return theta - theta.mean(axis=1, keepdims=True), var, evidence


def flips_to_change_top(
    votes: pd.DataFrame,
    *,
    l2: float | None = 1.0,
    centre: pd.Series | None = None,
    precision: pd.Series | None = None,
    max_rounds: int = 400,
) -> int | None:
    """Smallest number of rated votes whose outcome, flipped, puts another system first.

    A flip turns a win around, or a tie into a win (half as far). The fit is the board's: plain
    with ``l2``, or the informed one's ``centre`` and ``precision``. For each challenger it
    flips, in batches, the votes that narrow its gap to the leader most (influence ``A^-1 x``,
    ``A`` the posterior Hessian), refits, and halves a batch that overshoots. None when no flips
    can change the top.
    """
    table = _aggregate(votes)
    systems = sorted(set(table.systems) | set([] if centre is None else centre.index))
    k = len(systems)
    if k < 2 or not len(table.i):
        return None
    pairs = _over(table, systems)
    q = np.full(k, l2_precision(l2))
    if precision is not None:
        q = precision.reindex(systems).fillna(0.0).to_numpy()
    c = np.zeros(k) if centre is None else centre.reindex(systems).fillna(0.0).to_numpy()
    leader = int(np.argmax(solve_counts(pairs, table.counts[None], q, c)[0]))
    rivals = np.array([x for x in range(k) if x != leader])
    rounds = len(rivals)
    counts = np.repeat(table.counts[None], rounds, axis=0)  # [R, P, 3]
    flips = np.zeros(rounds, dtype=np.int64)
    cap = np.full(rounds, np.iinfo(np.int64).max)
    result = np.full(rounds, -1, dtype=np.int64)
    undo: list = [None] * rounds
    for _ in range(max_rounds):
        theta = solve_counts(pairs, counts, q, c)
        crossed = np.delete(theta, leader, axis=1).max(axis=1) > theta[:, leader] + 1e-9
        for r in np.flatnonzero(crossed & (result < 0)):
            size, before = undo[r]
            if size <= 1:
                result[r] = flips[r]
            else:  # overshot: go back and take half the batch
                counts[r], flips[r], cap[r] = before, flips[r] - size, size // 2
        active = np.flatnonzero(result < 0)
        if not len(active):
            break
        p = expit(theta[:, pairs.i] - theta[:, pairs.j])
        a = hessian(pairs, counts.sum(axis=2) * p * (1.0 - p), q, k)
        target = np.zeros((rounds, k))
        target[:, leader] = 1.0
        target[np.arange(rounds), rivals] = -1.0
        u = np.linalg.solve(a, target[..., None])[..., 0]  # d gap / d (score of each system)
        per_pair = u[:, pairs.i] - u[:, pairs.j]  # [R, P]
        gap = theta[:, leader] - theta[np.arange(rounds), rivals]
        for r in active:
            if crossed[r]:
                continue
            best = _best_flip(per_pair[r], counts[r])
            if best is None:
                result[r] = np.iinfo(np.int64).max  # this rival cannot be lifted
                continue
            effect, pair, col_from, col_to = best
            want = max(1, int(0.5 * gap[r] / -effect))
            size = int(min(want, cap[r], counts[r, pair, col_from]))
            undo[r] = (size, counts[r].copy())
            counts[r, pair, col_from] -= size
            counts[r, pair, col_to] += size
            flips[r] += size
    done = result[(result >= 0) & (result < np.iinfo(np.int64).max)]
    return int(done.min()) if len(done) else None


#: Flips: (from outcome column, to column, score change of the pair's first system).
_FLIPS = ((0, 2, -1.0), (2, 0, 1.0), (1, 2, -0.5), (1, 0, 0.5))


def _best_flip(per_pair: np.ndarray, counts: np.ndarray) -> tuple | None:
    """The flip that narrows the gap most: ``(effect, pair, from column, to column)``, None when
    no flip narrows it. ``per_pair`` ``[P]``: the gap's change per unit of a pair's score."""
    best = None
    for col_from, col_to, delta in _FLIPS:
        effect = np.where(counts[:, col_from] > 0, per_pair * delta, np.inf)
        pair = int(np.argmin(effect))
        if effect[pair] < 0 and (best is None or effect[pair] < best[0]):
            best = (effect[pair], pair, col_from, col_to)
    return best

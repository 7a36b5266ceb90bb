"""The one solver of every logistic and Bradley-Terry fit, for ``B`` problems at once (bootstrap
rounds, prior settings, permutations): damped Newton steps with a line search minimise ``sum_r
n_r softplus(d_r) - s_r d_r + 0.5 sum_c q_c (x_c - m_c)^2``, ``d = X x``: ``n_r`` a row's weight,
``s_r`` its weighted score (``n_r`` times the win share 1, 0.5 or 0), ``q`` and ``m`` a Gaussian
prior's precision and centre. Rows: a dense design ``[N, D]`` or :class:`Pairs` (``e_i - e_j``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

_MAX_ITER = 100
_STEP_TOL = 1e-10  # nats; far below the 0.01-point (6e-5 nat) agreement the boards promise
_RIDGE = 1e-9  # keeps a disconnected comparison graph's Hessian invertible


@dataclass(frozen=True)
class Pairs:
    """Rows ``e_i[p] - e_j[p]`` over ``k`` systems, each unordered pair at most once."""

    i: np.ndarray  # [P] int
    j: np.ndarray  # [P] int
    k: int

    def matrix(self) -> np.ndarray:
        """The dense ``[P, k]`` design."""
        out = np.zeros((len(self.i), self.k))
        out[np.arange(len(self.i)), self.i] = 1.0
        out[np.arange(len(self.j)), self.j] = -1.0
        return out


def gram(x: np.ndarray | Pairs, w: np.ndarray) -> np.ndarray:
    """``[B, D, D]``: ``X^T diag(w_b) X`` for each row ``w_b`` of ``w`` ``[B, N]``."""
    if isinstance(x, Pairs):
        out = np.zeros((w.shape[0], x.k, x.k))
        out[:, x.i, x.j] = out[:, x.j, x.i] = -w
        out[:, np.arange(x.k), np.arange(x.k)] = -out.sum(axis=2)
        return out
    return (x.T[None] * w[:, None, :]) @ x  # one BLAS product per problem


def hessian(x, w, precision: np.ndarray | float = 0.0, flat: int = 0) -> np.ndarray:
    """``[B, D, D]`` Hessian of the objective at likelihood weights ``w = n p (1 - p)``. ``flat``:
    the first ``flat`` coordinates are strengths whose common shift only a prior pins; where none
    does, ``11^T / flat`` fixes it without moving the optimum (every gradient is orthogonal)."""
    out = gram(x, w)
    dim = out.shape[1]
    q = np.broadcast_to(np.asarray(precision, dtype=np.float64), (out.shape[0], dim))
    out[:, np.arange(dim), np.arange(dim)] += q + _RIDGE
    if flat:
        out[:, :flat, :flat] += (q[:, :flat].max(axis=1) == 0.0)[:, None, None] / flat
    return out


def covariance(x, w, precision=0.0, flat: int = 0, meat: np.ndarray | None = None) -> np.ndarray:
    """``[D, D]`` covariance of the optimum, its first ``flat`` coordinates centred: ``A^-1``
    (the posterior; ``A`` the :func:`hessian` at likelihood weights ``w`` ``[N]``) or, given each
    row's squared score residual ``meat`` ``[N]``, the sandwich ``A^-1 X^T diag(meat) X A^-1``."""
    bread = np.linalg.inv(hessian(x, w[None], precision, flat)[0])
    cov = bread if meat is None else bread @ gram(x, meat[None])[0] @ bread
    centring = np.eye(len(cov))
    centring[:flat, :flat] -= 1.0 / max(flat, 1)
    return centring @ cov @ centring.T


def objective(x, n, s, theta, precision=0.0, centre=0.0) -> np.ndarray:
    """``[B]`` penalised negative log-likelihood at ``theta`` ``[B, D]`` (as in :func:`solve`)."""
    d = _logits(x, theta)
    penalty = 0.5 * (precision * (theta - centre) ** 2).sum(axis=1)
    return (n * np.logaddexp(0.0, d) - s * d).sum(axis=1) + penalty


def solve(
    x: np.ndarray | Pairs,
    n: np.ndarray,
    s: np.ndarray,
    *,
    precision: np.ndarray | float = 0.0,
    centre: np.ndarray | None = None,
    flat: int = 0,
    start: np.ndarray | None = None,
    tol: float = _STEP_TOL,
) -> np.ndarray:
    """The ``[B, D]`` minimisers of the objective for ``B`` problems at once.

    Args:
        x: ``[N, D]`` design or :class:`Pairs` (``D = k``).
        n, s: ``[B, N]`` row weights and weighted scores (``s = n y``, ``0 <= y <= 1``).
        precision: prior precision, scalar, ``[D]`` or ``[B, D]``; centre: its centre (default 0).
        flat: leading coordinates with a flat common shift (see :func:`hessian`); where no prior
            pins them they come back centred (mean zero).
        start: ``[D]`` or ``[B, D]`` first iterate (default ``centre``).
        tol: stop when no problem's step exceeds this (nats).
    """
    rounds = n.shape[0]
    dim = x.k if isinstance(x, Pairs) else x.shape[1]
    q = np.broadcast_to(np.asarray(precision, dtype=np.float64), (rounds, dim))
    centre = np.broadcast_to(np.zeros(dim) if centre is None else centre, (rounds, dim))
    theta = np.array(np.broadcast_to(centre if start is None else start, (rounds, dim)))
    design = x.matrix() if isinstance(x, Pairs) else x
    f = objective(x, n, s, theta, q, centre)
    for _ in range(_MAX_ITER):
        p = expit(_logits(x, theta))
        grad = (n * p - s) @ design + q * (theta - centre)
        step = -np.linalg.solve(hessian(x, n * p * (1.0 - p), q, flat), grad[..., None])[..., 0]
        t, f = _armijo(lambda z: objective(x, n, s, z, q, centre), theta, step, grad, f)
        theta = theta + t[:, None] * step
        if np.max(np.abs(t[:, None] * step), initial=0.0) < tol:
            break
    if flat:
        free = q[:, :flat].max(axis=1) == 0.0
        theta[free, :flat] -= theta[free, :flat].mean(axis=1, keepdims=True)
    return theta


def _logits(x, theta: np.ndarray) -> np.ndarray:
    """``[B, N]`` logits ``X theta``."""
    if isinstance(x, Pairs):
        return theta[:, x.i] - theta[:, x.j]
    return theta @ x.T


def _armijo(objective, x, step, grad, f) -> tuple[np.ndarray, np.ndarray]:
    """Backtracking line search per problem (plain Newton overshoots on lopsided records): ``[B]``
    step lengths (0 for a problem at its optimum to machine precision) and the objective there."""
    slope = (grad * step).sum(axis=1)
    t = np.ones(x.shape[0])
    slack = 1e-12 * np.abs(f)  # rounding noise once converged
    for _ in range(40):
        f_new = objective(x + t[:, None] * step)
        bad = ~(f_new <= f + 1e-4 * t * slope + slack)
        if not bad.any():
            break
        t = np.where(bad, 0.5 * t, t)
    else:  # no decrease found: at its optimum to machine precision
        t = np.where(bad, 0.0, t)
        f_new = np.where(bad, f, f_new)
    return t, f_new

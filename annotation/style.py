"""Style-controlled Bradley-Terry (LMArena's style control): ``P(A > B) = sigmoid(theta_a -
theta_b + sum_c beta_c z_c)``, ``z_c`` the A-minus-B difference of covariate ``c`` over its SD on
the rated votes (``position``: 1, unscaled). Votes missing a covariate are left out and counted;
a constant covariate is dropped. Likelihood, ``l2`` and scale as :mod:`annotation.ratings`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from annotation.ratings import (
    INIT_RATING,
    POINTS_PER_NAT,
    _aggregate,
    _drop_below,
    a_win_share,
    check_fit_options,
    l2_precision,
    ratings_table,
)
from apex.logistic import covariance, solve

COVARIATES: tuple[str, ...] = ("duration", "loudness", "vocals", "position")
UNITS = {  # one raw unit of each covariate, for the effects table
    "duration": "(A-B)/(A+B) of length",
    "loudness": "LU louder",
    "vocals": "vocals vs instrumental",
    "position": "clip A (first) rather than B",
}
_CELLS_PER_CHUNK = 8_000_000  # bounds bootstrap memory: rounds x rows x dim^2 per chunk


@dataclass(frozen=True)
class StyleFit:
    """``ratings`` as :func:`~annotation.ratings.fit_bradley_terry`'s; ``effects`` indexed by
    ``covariate``: ``per_sd`` (points per SD, ``ci_low``/``ci_high``), ``sd`` (raw units),
    ``per_unit`` (points per raw unit), ``unit``, ``win_rate_per_sd`` (how often a clip one SD
    "more" beats an equal system); ``missing_votes``: rated votes lacking a covariate;
    ``dropped``: covariates that never varied."""

    ratings: pd.DataFrame
    effects: pd.DataFrame
    used_votes: int
    missing_votes: int
    dropped: tuple[str, ...]


def style_features(votes: pd.DataFrame, covariates: Sequence[str] = COVARIATES) -> pd.DataFrame:
    """``[N, C]`` raw A-minus-B covariates per vote (NaN where a clip's value is unknown).

    ``duration``: ``(d_a - d_b) / (d_a + d_b)``; ``loudness``: LU; ``vocals``: -1, 0 or 1;
    ``position``: 1 (the log-odds that clip A, played first, wins at equal strength).
    """
    unknown = set(covariates) - set(COVARIATES)
    if unknown:
        raise ValueError(f"unknown covariate(s) {sorted(unknown)}; use any of {COVARIATES}")
    out = pd.DataFrame(index=votes.index)

    def col(name: str) -> pd.Series:  # None (unknown) and a missing column become NaN
        return votes.get(name, pd.Series(np.nan, index=votes.index)).astype("float64")

    if "duration" in covariates:
        da, db = col("duration_a"), col("duration_b")
        out["duration"] = (da - db) / (da + db)
    if "loudness" in covariates:
        out["loudness"] = col("loudness_a") - col("loudness_b")
    if "vocals" in covariates:
        out["vocals"] = (1.0 - col("instrumental_a")) - (1.0 - col("instrumental_b"))
    if "position" in covariates:
        out["position"] = 1.0
    return out[list(covariates)].astype("float64")


def fit_style_controlled(
    votes: pd.DataFrame,
    *,
    covariates: Sequence[str] = COVARIATES,
    l2: float | None = 1.0,
    bootstrap_rounds: int = 0,
    seed: int = 0,
    min_votes: int = 0,
    interval: str = "bootstrap",
) -> StyleFit:
    """Fit system ratings and covariate effects together (see the module doc).

    ``votes``: ``system_a``, ``system_b``, ``preference`` and the covariates' columns
    (``duration_a/_b``, ``loudness_a/_b``, ``instrumental_a/_b``); ``covariates``: any of
    :data:`COVARIATES` (``()``: the plain fit); ``l2``: ridge on every coefficient; the rest as
    :func:`annotation.ratings.fit_bradley_terry`, but the bootstrap resamples vote rows and
    ``interval`` is ``"bootstrap"`` or ``"sandwich"`` (one pass where a bootstrap takes hundreds).
    """
    check_fit_options(l2, bootstrap_rounds, interval, ("bootstrap", "sandwich"))
    # The A/B/TIE votes among the systems the plain board keeps at min_votes.
    board = _drop_below(_aggregate(votes), max(min_votes, 1)).systems
    rated = votes[~np.isnan(a_win_share(votes["preference"]))]
    rated = rated[rated["system_a"].isin(board) & rated["system_b"].isin(board)]
    raw = style_features(rated, covariates)
    complete = raw.notna().all(axis=1).to_numpy()
    rated, raw = rated[complete], raw[complete]
    sd = raw.std(axis=0, ddof=0).where(raw.columns != "position", 1.0)
    dropped = tuple(c for c in raw.columns if not sd[c] > 1e-12)
    kept = [c for c in raw.columns if c not in dropped]
    z = (raw[kept] / sd[kept]).to_numpy(dtype=np.float64)
    codes, systems = pd.factorize(pd.concat([rated["system_a"], rated["system_b"]]), sort=True)
    n, k = len(rated), len(systems)
    a, b = codes[:n], codes[n:]
    y = a_win_share(rated["preference"])
    design = np.zeros((n, k + len(kept)))
    design[np.arange(n), a] = 1.0
    design[np.arange(n), b] = -1.0
    design[:, k:] = z
    theta = np.zeros(k + len(kept))
    if n:
        theta = solve(design, np.ones((1, n)), y[None], precision=l2_precision(l2), flat=k)[0]
    bounds = np.full((2, k + len(kept)), np.nan)  # 95% low and high, nats
    if interval == "sandwich" and n:
        p = expit(design @ theta)
        cov = covariance(design, p * (1.0 - p), l2_precision(l2), k, (p - y) ** 2)
        se = 1.959964 * np.sqrt(np.clip(np.diag(cov), 0.0, None))
        bounds = np.stack([theta - se, theta + se])
    elif bootstrap_rounds and n:
        boot = _bootstrap(design, y, k, l2, bootstrap_rounds, seed, theta)
        bounds = np.percentile(boot, [2.5, 97.5], axis=0)
    low, high = INIT_RATING + POINTS_PER_NAT * bounds[:, :k]
    votes_k = np.bincount(a, minlength=k) + np.bincount(b, minlength=k)
    ratings = ratings_table(systems, INIT_RATING + POINTS_PER_NAT * theta[:k], low, high, votes_k)
    effects = _effects_table(theta[k:], POINTS_PER_NAT * bounds[:, k:], kept, sd)
    return StyleFit(ratings, effects, int(n), int((~complete).sum()), dropped)


def _effects_table(beta, ci, kept, sd) -> pd.DataFrame:
    """The effects table from the ``[C]`` coefficients and ``[2, C]`` bounds (points)."""
    scale = np.array([sd[c] for c in kept], dtype=np.float64)
    return pd.DataFrame(
        {
            "per_sd": POINTS_PER_NAT * beta,
            "ci_low": ci[0],
            "ci_high": ci[1],
            "sd": scale,
            "per_unit": POINTS_PER_NAT * beta / scale if len(kept) else [],
            "unit": [UNITS[c] for c in kept],
            "win_rate_per_sd": expit(beta),
        },
        index=pd.Index(kept, name="covariate", dtype=object),
    )


def _bootstrap(design, y, k, l2, rounds: int, seed: int, optimum: np.ndarray) -> np.ndarray:
    """``[rounds, K + C]`` fits on multinomial resamples of the vote rows, started at the
    optimum and stopped at 1e-6 nats (0.0002 points)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    chunk = max(1, _CELLS_PER_CHUNK // max(1, n * design.shape[1] ** 2))
    sizes = [min(chunk, rounds - first) for first in range(0, rounds, chunk)]
    weights = (rng.multinomial(n, np.full(n, 1.0 / n), size=s).astype(np.float64) for s in sizes)
    fits = [
        solve(design, w, w * y, precision=l2_precision(l2), flat=k, start=optimum, tol=1e-6)
        for w in weights
    ]
    return np.concatenate(fits, axis=0)

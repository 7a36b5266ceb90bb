"""Uncertainty for the arena protocol, vectorised over resamples. Bootstrap intervals keep the
out-of-fold predictions fixed (the sampling error of the evaluation set, not of the fit);
permutation p-values follow Phipson & Smyth (2010)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats
from scipy.special import expit

from apex.logistic import solve

#: Central interval reported everywhere (95 %).
LEVEL = 0.95


def auc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of every row: ``scores`` and ``y`` (0/1) ``[B, N]``, either may be ``[N]``
    (shared by all rows). Ties in a score count half (the Mann-Whitney statistic). ``[B]``
    (a float for 1-D input); NaN where a row holds one outcome only."""
    s, yy = np.broadcast_arrays(
        np.atleast_2d(np.asarray(scores, np.float64)), np.atleast_2d(np.asarray(y, bool))
    )
    ranks = stats.rankdata(s, axis=1)
    n1 = yy.sum(axis=1)
    n0 = yy.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((ranks * yy).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    out = np.where((n1 > 0) & (n0 > 0), out, np.nan)
    return float(out[0]) if np.ndim(scores) == 1 and np.ndim(y) == 1 else out


def accuracy(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Share of rows' battles where ``proba > 0.5`` matches ``y``; exactly 0.5 counts half."""
    p = np.asarray(proba, np.float64)
    hit = np.where(p == 0.5, 0.5, (p > 0.5) == np.asarray(y, bool))
    out = hit.mean(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def interval(values: np.ndarray) -> list[float]:
    """``[low, high]`` percentile interval at :data:`LEVEL` of ``values`` ``[B]`` (NaNs ignored)."""
    tail = (1 - LEVEL) / 2 * 100
    finite = values[np.isfinite(values)]
    if not len(finite):
        return [float("nan"), float("nan")]
    return [float(v) for v in np.percentile(finite, [tail, 100 - tail])]


def bootstrap(
    proba: np.ndarray, y: np.ndarray, *, n: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """Percentile intervals of AUC and accuracy over ``n`` resamples of the ``[N]`` battles."""
    proba, y = np.asarray(proba, np.float64), np.asarray(y, bool)
    idx = np.random.default_rng(seed).integers(len(y), size=(n, len(y)))
    return {
        "auc_ci": interval(auc(proba[idx], y[idx])),
        "accuracy_ci": interval(accuracy(proba[idx], y[idx])),
    }


def shuffled_labels(y: np.ndarray, strata: np.ndarray, *, n: int, seed: int) -> np.ndarray:
    """``[n, N]`` copies of ``y`` ``[N]``, each permuted within the cells of ``strata`` ``[N]``
    (so every stratum keeps its count of each outcome in every copy)."""
    y, strata = np.asarray(y), np.asarray(strata)
    keys = np.random.default_rng(seed).random((n, len(y)))
    order = np.lexsort((keys, np.broadcast_to(strata, keys.shape)), axis=-1)
    home = np.argsort(strata, kind="stable")  # each stratum's positions, in stratum order
    out = np.empty((n, len(y)), dtype=y.dtype)
    out[:, home] = y[order]
    return out


def permutation_pvalue(observed: float, null: np.ndarray) -> float:
    """One-sided p-value of ``observed`` against ``null`` ``[B]`` (NaNs dropped); never 0."""
    null = null[np.isfinite(null)]
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))


def agreement(margin: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Does "the clip with the higher score wins" hold, for ``margin`` = score A - score B ``[N]``?
    ``n`` (non-zero margins), ``equal`` (zero margins, which say nothing), ``agree``,
    ``accuracy``, its Wilson ``ci``, the exact two-sided binomial ``p`` against 0.5 and ``sign``:
    ``"agrees"`` / ``"inverted"`` when the interval excludes 0.5, else ``"unclear"``."""
    margin, y = np.asarray(margin, np.float64), np.asarray(y, bool)
    decided = margin != 0
    n = int(decided.sum())
    agree = int(((margin > 0) == y)[decided].sum())
    out: dict[str, Any] = {"n": n, "equal": int((~decided).sum()), "agree": agree}
    if n == 0:
        nan = float("nan")
        return out | {"accuracy": nan, "ci": [nan, nan], "p": 1.0, "sign": "unclear"}
    low, high = wilson_interval(agree, n)
    sign = "agrees" if low > 0.5 else "inverted" if high < 0.5 else "unclear"
    p = float(stats.binomtest(agree, n, 0.5).pvalue)
    return out | {"accuracy": agree / n, "ci": [low, high], "p": p, "sign": sign}


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """Wilson score interval at :data:`LEVEL` of a binomial proportion; ``(0, 1)`` when n = 0."""
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(successes, n).proportion_ci(LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def logistic_oof_proba(
    x: np.ndarray, labels: np.ndarray, fold: np.ndarray, *, c: float = 0.1, chunk: int = 250
) -> np.ndarray:
    """Out-of-fold P("A won") ``[B, N]`` of the paper's logistic regression on features ``x``
    ``[N, F]`` for ``B`` labellings ``labels`` ``[B, N]`` (0/1) at once, per test fold of
    ``fold`` ``[N]``: standardise on the training battles, then minimise
    ``0.5 |w|^2 + c * sum_i s_i * logloss_i`` (intercept unpenalised, ``s_i`` balanced class
    weights), as scikit-learn's ``LogisticRegression(C=c, class_weight="balanced")`` does.
    ``chunk`` labellings are solved together (memory ~``chunk * N * F`` floats)."""
    labels = np.atleast_2d(labels).astype(np.float64)
    out = np.empty_like(labels)
    penalty = np.ones(x.shape[1] + 1)
    penalty[-1] = 0.0  # the intercept is not penalised
    for k in np.unique(fold):
        test = fold == k
        mean = x[~test].mean(axis=0)
        scale = x[~test].std(axis=0)
        scale[scale == 0] = 1.0  # what StandardScaler does with a constant column
        xtr, xte = (
            np.column_stack([(r - mean) / scale, np.ones(len(r))]) for r in (x[~test], x[test])
        )
        n = len(xtr)
        for start in range(0, len(labels), chunk):
            ytr = labels[start : start + chunk, ~test]
            pos = ytr.sum(axis=1, keepdims=True)
            weight = c * np.where(ytr == 1, n / (2 * pos), n / (2 * (n - pos)))
            theta = solve(xtr, weight, weight * ytr, precision=penalty)
            out[start : start + chunk, test] = expit(theta @ xte.T)
    return out

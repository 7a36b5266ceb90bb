"""Intervals, permutations and sign agreement of the arena report, against independent answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apex.evaluation import cv as arena_cv
from apex.evaluation import stats as st


def test_auc_matches_scikit_learn_row_by_row_and_counts_ties_half() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random((5, 60)) < 0.4
    s = np.round(rng.normal(size=(5, 60)) + y, 1)  # rounding makes ties
    got = st.auc(s, y)
    assert got.shape == (5,)
    assert np.allclose(got, [roc_auc_score(y[i], s[i]) for i in range(5)])
    assert st.auc(np.zeros(10), np.arange(10) % 2) == 0.5
    assert math.isnan(st.auc(np.arange(4.0), np.ones(4)))  # one outcome only
    assert np.allclose(st.auc(s[0], y), [roc_auc_score(r, s[0]) for r in y])  # shared scores


def test_accuracy_counts_a_coin_flip_half() -> None:
    assert st.accuracy(np.array([0.9, 0.2, 0.5, 0.7]), np.array([1, 0, 1, 0])) == 0.625


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_battles() -> None:
    rng = np.random.default_rng(1)

    def width(n: int) -> tuple[float, dict]:
        y = rng.random(n) < 0.5
        p = 1 / (1 + np.exp(-(y - 0.5 + rng.normal(0, 1, n))))
        ci = st.bootstrap(p, y, n=500, seed=0)
        assert ci["auc_ci"][0] < st.auc(p, y) < ci["auc_ci"][1]
        assert ci["accuracy_ci"][0] < st.accuracy(p, y) < ci["accuracy_ci"][1]
        return ci["auc_ci"][1] - ci["auc_ci"][0], ci

    small, _ = width(100)
    large, _ = width(1600)
    # the standard error of an AUC falls like 1/sqrt(n): 16x the battles, about 1/4 the width
    assert 0.15 < large / small < 0.4


def test_shuffles_stay_within_their_strata_and_differ_between_copies() -> None:
    y = np.array([1, 1, 0, 0, 0, 1, 0, 1, 1, 0])
    strata = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    out = st.shuffled_labels(y, strata, n=200, seed=3)
    assert out.shape == (200, 10)
    for s in np.unique(strata):
        assert (out[:, strata == s].sum(axis=1) == y[strata == s].sum()).all()
    assert len({tuple(r) for r in out}) > 20
    assert (st.shuffled_labels(y, np.arange(10), n=5, seed=0) == y).all()  # singletons stay


def test_batched_logistic_regression_is_the_papers_scikit_learn_model() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 6)) * [1, 10, 0.1, 1, 1, 1]
    x[:, 5] = 2.0  # a constant column, as is_instrumental on a one-board set
    y = (x[:, 0] + 0.1 * x[:, 1] + rng.normal(size=300) > 0.5).astype(int)
    fold = arena_cv.fold_ids(y, None)
    ours = st.logistic_oof_proba(x, np.vstack([y, 1 - y]), fold)
    theirs = arena_cv.cross_validated_proba(arena_cv.logistic_regression(), x, y, fold)
    flipped = arena_cv.cross_validated_proba(arena_cv.logistic_regression(), x, 1 - y, fold)
    assert np.abs(ours[0] - theirs).max() < 1e-3  # scikit-learn stops at its lbfgs tolerance
    assert np.abs(ours[1] - flipped).max() < 1e-3


def test_agreement_known_answers() -> None:
    y = np.array([1] * 70 + [0] * 30)
    margin = np.ones(100)
    got = st.agreement(margin, y)
    assert (got["n"], got["agree"], got["accuracy"], got["sign"]) == (100, 70, 0.7, "agrees")
    # Wilson interval, written out: (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, n, p = 1.959963984540054, 100, 0.7
    mid, half = p + z**2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert got["ci"] == pytest.approx(
        [(mid - half) / (1 + z**2 / n), (mid + half) / (1 + z**2 / n)]
    )
    assert got["p"] < 1e-4
    inverted = st.agreement(-margin, y)
    assert inverted["accuracy"] == pytest.approx(0.3) and inverted["sign"] == "inverted"
    unclear = st.agreement(np.r_[np.ones(10), np.zeros(5)], np.r_[[1] * 6 + [0] * 4, [1] * 5])
    assert (unclear["n"], unclear["equal"], unclear["sign"]) == (10, 5, "unclear")


def test_permutation_pvalue_is_never_zero_and_counts_ties_as_extreme() -> None:
    assert st.permutation_pvalue(0.9, np.full(99, 0.5)) == 0.01
    assert st.permutation_pvalue(0.5, np.full(99, 0.5)) == 1.0
    assert st.permutation_pvalue(0.6, np.r_[np.full(9, 0.5), np.nan]) == 0.1

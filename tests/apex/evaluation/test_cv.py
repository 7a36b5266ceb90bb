"""The shared arena protocol: known answers, feature invariants, and both users calling it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apex.evaluation import cv as arena_cv
from apex.tasks import ENGAGEMENT, SCORE_NAMES
from apex.training.battles import Battles


def _battles(n_clips: int = 100, n: int = 300, seed: int = 0) -> tuple[Battles, np.ndarray]:
    """Decisive battles won by the clip of higher latent quality ``q`` ``[n_clips]``."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(1, 5, n_clips)
    a = rng.integers(n_clips, size=n)
    b = (a + 1 + rng.integers(n_clips - 1, size=n)) % n_clips
    y = (q[a] > q[b]).astype(np.float32)
    return Battles(a, b, y, np.zeros(n), rng.random(n) < 0.5), q


def _scores(values: np.ndarray) -> dict[str, np.ndarray]:
    return {n: values * 20 if n in ENGAGEMENT else values for n in SCORE_NAMES}


def _cv_auc(scores: dict[str, np.ndarray], battles: Battles) -> float:
    from sklearn.metrics import roc_auc_score

    x, _ = arena_cv.battle_features(scores, battles.a, battles.b, battles.is_instrumental)
    y = battles.y.astype(int)
    fold = arena_cv.fold_ids(y, None)
    assert not isinstance(fold, str)
    proba = arena_cv.cross_validated_proba(arena_cv.logistic_regression(), x, y, fold)
    assert proba.shape == y.shape and ((proba >= 0) & (proba <= 1)).all()
    return float(roc_auc_score(y, proba))


def test_a_perfect_predictor_scores_auc_one() -> None:
    from apex.evaluation.metrics import arena_protocol

    battles, q = _battles()
    assert _cv_auc(_scores(q), battles) > 0.99
    report = arena_protocol(_scores(q), battles)
    assert report["auc"] > 0.99 and report["auc_ci"][0] > 0.98


def test_a_constant_predictor_scores_auc_one_half() -> None:
    from apex.evaluation.metrics import arena_protocol

    battles, _ = _battles()
    battles.is_instrumental[:] = True  # no information in any feature
    constant = _scores(np.full(100, 3.0))
    # Fitted models only differ between folds by solver noise in the intercept.
    assert abs(_cv_auc(constant, battles) - 0.5) < 0.06
    assert abs(arena_protocol(constant, battles)["auc"] - 0.5) < 0.06


def test_features_are_named_antisymmetric_and_gated_by_the_flag() -> None:
    scores = {"score_streams": np.array([10.0, 40.0]), "score_likes": np.array([20.0, 60.0])}
    x, names = arena_cv.battle_features(scores, np.array([0, 1]), np.array([1, 0]), [True, False])
    assert names == [
        "diff_score_streams",
        "diff_score_likes",
        "diff_combined_popularity",
        "ratio_score_streams",
        "ratio_score_likes",
        "ratio_combined_popularity",
        "is_instrumental",
        "diff_score_streams_x_instr",
        "diff_score_likes_x_instr",
        "diff_combined_popularity_x_instr",
    ]
    assert x.shape == (2, 10) and x.dtype == np.float64
    assert np.allclose(x[0, :3], -x[1, :3]) and x[0, 2] == -35.0
    assert x[0, 3] == pytest.approx(0.25) and x[1, 3] == pytest.approx(4.0)
    assert np.array_equal(x[:, 7:], [[-30.0, -40.0, -35.0], [0.0, 0.0, 0.0]])


def test_too_few_of_an_outcome_is_a_reason_not_a_crash() -> None:
    from apex.evaluation.metrics import arena_protocol

    y = np.array([1] * 9 + [0] * 30)
    assert "only 9 battles of the rarer outcome" in arena_cv.fold_ids(y, None, folds=10)
    assert not isinstance(arena_cv.fold_ids(y, None, folds=9), str)
    battles, q = _battles(n=40)
    battles.y[:] = 1.0
    battles.y[:5] = 0.0
    report = arena_protocol(_scores(q), battles)
    assert np.isnan(report["auc"]) and np.isnan(report["auc_ci"]).all() and report["n"] == 40


def test_both_users_score_the_same_battles_alike() -> None:
    """The training module's protocol and the Music Arena evaluation, on the same battles and
    scores, give the same out-of-fold AUC (same features, same paper folds)."""
    from apex.evaluation.arena import evaluate_arena
    from apex.evaluation.metrics import arena_protocol

    battles, q = _battles()
    noisy = q + np.random.default_rng(3).normal(0, 1.0, len(q))
    theirs = arena_protocol(_scores(noisy), battles)["auc"]
    frame = pd.DataFrame(
        {
            "clip_a": [f"c{i}" for i in battles.a],
            "clip_b": [f"c{i}" for i in battles.b],
            "preference": np.where(battles.y == 1.0, "A", "B"),
            "is_instrumental": battles.is_instrumental,
        }
    )
    predictions = pd.DataFrame(_scores(noisy), index=[f"c{i}" for i in range(len(q))])
    report = evaluate_arena(
        frame, predictions, feature_set="all", schemes=("paper",), svm="off", n_boot=10, n_perm=0
    )
    assert 0.6 < theirs < 0.99
    ours = report["schemes"]["paper"]["models"]["logistic_regression"]["auc"]["overall"]
    assert ours == pytest.approx(theirs)


def test_explicit_paper_folds_are_scikit_learns_stratified_folds() -> None:
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    battles, q = _battles(seed=2)
    x, _ = arena_cv.battle_features(_scores(q), battles.a, battles.b, battles.is_instrumental)
    y = battles.y.astype(int)
    model = arena_cv.logistic_regression()
    cv = StratifiedKFold(n_splits=10, shuffle=True, random_state=42)
    expected = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    fold = arena_cv.fold_ids(y, None)
    assert np.allclose(arena_cv.cross_validated_proba(model, x, y, fold), expected)


def test_pairs_are_unordered_and_linked_groups_are_connected_components() -> None:
    pairs = arena_cv.pair_labels(np.array(["b", "a", "a", "c"]), np.array(["a", "b", "c", "a"]))
    assert list(pairs) == ["a|b", "a|b", "a|c", "a|c"]
    prompts = np.array(["p1", "p2", "p2", "p3", "p4", "p4"])
    pairs = np.array(["x", "y", "z", "z", "w", "w"])
    groups = arena_cv.linked_groups(prompts, pairs)
    # p2 joins pairs y and z; p3 shares pair z: {0}, {1, 2, 3}, {4, 5}
    assert len(set(groups)) == 3
    assert groups[1] == groups[2] == groups[3] and groups[4] == groups[5]
    assert len({groups[0], groups[1], groups[4]}) == 3


def test_grouped_folds_never_split_a_group_and_keep_both_outcomes_in_training() -> None:
    rng = np.random.default_rng(5)
    n = 500
    prompts = rng.integers(80, size=n)
    pair_of_prompt = rng.integers(20, size=80)  # prompts nested in pairs: 20 components
    pairs = pair_of_prompt[prompts]
    y = (rng.random(n) < 0.45).astype(int)
    for scheme in arena_cv.FOLD_SCHEMES:
        groups = arena_cv.scheme_groups(scheme, prompts.astype(str), pairs.astype(str))
        fold = arena_cv.fold_ids(y, groups, folds=10, seed=0)
        assert fold.shape == (n,) and set(fold) == set(range(10)), scheme
        if groups is not None:
            for g in np.unique(groups):
                assert len(set(fold[groups == g])) == 1, (scheme, g)
    for key in (prompts, pairs):  # prompt+pair: no prompt and no pair on both sides
        groups = arena_cv.scheme_groups("prompt+pair", prompts.astype(str), pairs.astype(str))
        fold = arena_cv.fold_ids(y, groups)
        assert all(len(set(fold[key == v])) == 1 for v in np.unique(key))


def test_fold_schemes_that_cannot_be_built_say_why() -> None:
    y = np.array([0, 1] * 50)
    assert "only 4 group(s)" in arena_cv.fold_ids(y, np.arange(100) % 4, folds=10)
    assert "only 3 battles" in arena_cv.fold_ids(np.r_[np.ones(3), np.zeros(50)], None)
    with pytest.raises(ValueError, match="needs the battles' prompts"):
        arena_cv.scheme_groups("prompt", None, None)
    with pytest.raises(ValueError, match="fold scheme must be one of"):
        arena_cv.scheme_groups("random", None, None)

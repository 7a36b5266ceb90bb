"""The shared arena protocol: known answers, feature invariants, and both users calling it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apex.tasks import ENGAGEMENT, SCORE_NAMES
from apex.training import arena_cv
from apex.training.data import Battles


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
    assert arena_cv.cv_skip_reason(y, 10) is None
    proba = arena_cv.cross_validated_proba(arena_cv.logistic_regression(), x, y)
    assert proba.shape == y.shape and ((proba >= 0) & (proba <= 1)).all()
    return float(roc_auc_score(y, proba))


def test_a_perfect_predictor_scores_auc_one() -> None:
    from apex.training.evaluate import arena_protocol

    battles, q = _battles()
    assert _cv_auc(_scores(q), battles) > 0.99
    assert arena_protocol(_scores(q), battles)["auc"] > 0.99


def test_a_constant_predictor_scores_auc_one_half() -> None:
    from apex.training.evaluate import arena_protocol

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
    from apex.training.evaluate import arena_protocol

    y = np.array([1] * 9 + [0] * 30)
    assert "only 9 battles of the rarer outcome" in arena_cv.cv_skip_reason(y, 10)
    assert arena_cv.cv_skip_reason(y, 9) is None
    battles, q = _battles(n=40)
    battles.y[:] = 1.0
    battles.y[:5] = 0.0
    report = arena_protocol(_scores(q), battles)
    assert np.isnan(report["auc"]) and report["n"] == 40


def test_training_and_sources_protocols_both_use_the_shared_builder(monkeypatch) -> None:
    from apex.sources.arena_eval import evaluate_arena
    from apex.training.evaluate import arena_protocol

    calls: list[int] = []
    real = arena_cv.battle_features

    def spy(*args, **kwargs):
        x, names = real(*args, **kwargs)
        calls.append(len(x))
        return x, names

    monkeypatch.setattr(arena_cv, "battle_features", spy)
    battles, q = _battles()
    arena_protocol(_scores(q), battles)
    frame = pd.DataFrame(
        {
            "clip_a": [f"c{i}" for i in battles.a],
            "clip_b": [f"c{i}" for i in battles.b],
            "preference": np.where(battles.y == 1.0, "A", "B"),
            "is_instrumental": battles.is_instrumental,
        }
    )
    predictions = pd.DataFrame(_scores(q), index=[f"c{i}" for i in range(len(q))])
    evaluate_arena(frame, predictions, svm="off")
    assert calls == [len(battles), len(battles)]

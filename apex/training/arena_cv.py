"""The APEX paper's arena protocol, shared: battle features and cross-validated probabilities.

Both users build on this module, so their features and folds cannot drift apart:
:func:`apex.training.evaluate.arena_protocol` (held-out battles during training, overall AUC) and
:func:`apex.sources.arena_eval.evaluate_arena` (Music Arena battles; AUC per instrumental/vocal
group, and an SVM beside the logistic regression).

The recipe is the reference notebook's (``APEX_arena_experiment.ipynb``): per battle, the
difference ``A - B`` and the ratio ``A / B`` of every predicted score and of
``combined_popularity`` (the mean of the engagement scores, when all are present), the
instrumental flag, and each difference times the flag; a standardised
``LogisticRegression(C=0.1, class_weight="balanced")``; shuffled stratified K-fold
cross-validation with "A won" as the positive class. Only numpy and scikit-learn: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from apex.tasks import ENGAGEMENT

#: Added to the denominator of the ``A / B`` ratios (scores can be 0).
RATIO_EPS = 1e-9


def battle_features(
    scores: Mapping[str, np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    instrumental: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """The notebook's per-battle features.

    Args:
        scores: per-clip predictions ``[M]`` by score name, in the order the features take.
        a, b: ``[N]`` clip indices (into the ``[M]`` arrays) of each battle's two clips.
        instrumental: ``[N]`` bool or 0/1, the battle's instrumental flag.

    Returns:
        ``[N, F]`` float64 features and their ``F`` names: ``diff_<score>`` and
        ``ratio_<score>`` per score (``combined_popularity`` last), ``is_instrumental``, then
        ``diff_<score>_x_instr``.
    """
    preds = {name: np.asarray(values, np.float64) for name, values in scores.items()}
    if all(e in preds for e in ENGAGEMENT):
        preds["combined_popularity"] = np.mean([preds[e] for e in ENGAGEMENT], axis=0)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    flag = np.asarray(instrumental, dtype=np.float64)
    diffs = {f"diff_{n}": v[a] - v[b] for n, v in preds.items()}
    ratios = {f"ratio_{n}": v[a] / (v[b] + RATIO_EPS) for n, v in preds.items()}
    inter = {f"{k}_x_instr": d * flag for k, d in diffs.items()}
    columns = {**diffs, **ratios, "is_instrumental": flag, **inter}
    return np.column_stack(list(columns.values())), list(columns)


def logistic_regression() -> Any:
    """The paper's classifier: standardise, then ``LogisticRegression(C=0.1, balanced)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scaler", StandardScaler()),
            ("lr", LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000)),
        ]
    )


def cv_skip_reason(y: np.ndarray, folds: int) -> str | None:
    """Why ``folds``-fold stratified CV cannot run on labels ``y`` ``[N]`` of 0/1, else None."""
    y = np.asarray(y)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < folds:
        return f"only {minority} battles of the rarer outcome; {folds}-fold CV needs {folds}"
    return None


def cross_validated_proba(
    model: Any, x: np.ndarray, y: np.ndarray, *, folds: int = 10, seed: int = 42
) -> np.ndarray:
    """Out-of-fold P("A won") ``[N]`` of ``model`` on features ``x`` ``[N, F]`` and labels ``y``.

    Folds are stratified and shuffled with ``seed``, so every model scored on the same battles
    sees the same splits. Check :func:`cv_skip_reason` first: too few of an outcome raises.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]

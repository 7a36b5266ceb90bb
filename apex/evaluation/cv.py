"""The APEX paper's arena recipe (battle features, classifier, folds, out-of-fold P), shared by
:func:`apex.evaluation.metrics.arena_protocol` and :func:`apex.evaluation.arena.evaluate_arena`;
grouped folds keep every prompt and/or unordered system pair on one side of each split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from apex.tasks import ENGAGEMENT

#: Added to the denominator of the ``A / B`` ratios (scores can be 0).
RATIO_EPS = 1e-9
#: Fold schemes of :func:`fold_ids` and how reports name them: the paper's, then grouped ones.
SCHEME_LABELS: dict[str, str] = {
    "paper": "paper's folds (stratified on the label only; prompts and pairs leak)",
    "prompt": "grouped by prompt",
    "pair": "grouped by unordered system pair",
    "prompt+pair": "grouped by prompt and pair (no prompt, no pair on both sides)",
}
FOLD_SCHEMES: tuple[str, ...] = tuple(SCHEME_LABELS)


def battle_features(
    scores: Mapping[str, np.ndarray], a: np.ndarray, b: np.ndarray, instrumental: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """The notebook's ``[N, F]`` float64 features and their ``F`` names.

    ``scores``: per-clip predictions ``[M]`` by name, in feature order; ``a``, ``b``: ``[N]``
    indices into them of each battle's clips; ``instrumental``: ``[N]`` bool or 0/1. Names:
    ``diff_<score>``, ``ratio_<score>`` (``combined_popularity``, the engagement mean, last),
    ``is_instrumental``, ``diff_<score>_x_instr``.
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
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000)
    return make_pipeline(StandardScaler(), lr)


def pair_labels(system_a: np.ndarray, system_b: np.ndarray) -> np.ndarray:
    """``[N]`` labels of the unordered system pair: ``x|y`` and ``y|x`` are the same pair."""
    pairs = zip(map(str, system_a), map(str, system_b), strict=True)
    return np.array([f"{min(a, b)}|{max(a, b)}" for a, b in pairs], dtype=str)


def linked_groups(*labels: np.ndarray) -> np.ndarray:
    """``[N]`` group ids: connected components of battles linked by sharing a value in any of
    ``labels`` (each ``[N]``); a prompt met by two pairs joins both pairs' battles."""
    n = len(labels[0])
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for values in labels:
        codes = np.unique(np.asarray(values), return_inverse=True)[1].ravel()
        first = np.full(codes.max() + 1 if n else 0, -1)
        for i, c in enumerate(codes):
            if first[c] < 0:
                first[c] = i
            else:
                parent[root(i)] = root(first[c])
    return np.unique([root(i) for i in range(n)], return_inverse=True)[1].ravel()


def scheme_groups(
    scheme: str, prompts: np.ndarray | None, pairs: np.ndarray | None
) -> np.ndarray | None:
    """The ``[N]`` groups a fold scheme keeps together (None for the paper's folds)."""
    if scheme not in FOLD_SCHEMES:
        raise ValueError(f"fold scheme must be one of {FOLD_SCHEMES}, got {scheme!r}")
    if scheme == "paper":
        return None
    if (scheme != "pair" and prompts is None) or (scheme != "prompt" and pairs is None):
        raise ValueError(f"fold scheme {scheme!r} needs the battles' prompts and system pairs")
    if scheme == "prompt+pair":
        return linked_groups(prompts, pairs)
    return np.unique(np.asarray(prompts if scheme == "prompt" else pairs), return_inverse=True)[1]


def fold_ids(
    y: np.ndarray, groups: np.ndarray | None, *, folds: int = 10, seed: int = 42
) -> np.ndarray | str:
    """``[N]`` test-fold index (0..folds-1) of every battle, or why the folds cannot be built:
    the paper's shuffled ``StratifiedKFold`` for ``groups=None``, else a shuffled
    ``StratifiedGroupKFold`` (every group in exactly one test fold)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < folds:
        return f"only {minority} battles of the rarer outcome; {folds}-fold CV needs {folds}"
    out = np.full(len(y), -1)
    if groups is None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y)
    else:
        n_groups = len(np.unique(groups))
        if n_groups < folds:
            return f"only {n_groups} group(s); {folds}-fold grouped CV needs {folds}"
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(y, y, groups)
    for k, (_, test) in enumerate(splits):
        out[test] = k
    for k in range(folds):  # a fold with one outcome cannot be trained against the other
        train = y[out != k]
        if train.min() == train.max():
            return f"test fold {k} leaves a training set with one outcome only"
    return out


def cross_validated_proba(model: Any, x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold P("A won") ``[N]`` of ``model`` on features ``x`` ``[N, F]`` and labels ``y``
    in the test folds ``fold`` ``[N]`` of :func:`fold_ids`."""
    from sklearn.base import clone

    proba = np.empty(len(y))
    for k in np.unique(fold):
        test = fold == k
        fitted = clone(model).fit(x[~test], y[~test])
        proba[test] = fitted.predict_proba(x[test])[:, 1]
    return proba

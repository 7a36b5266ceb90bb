"""The APEX paper's out-of-distribution arena protocol on Music Arena battles.

Given APEX predictions for both clips of every battle, the notebook of the reference
(``APEX_arena_experiment.ipynb``) builds, per battle, the difference ``A - B`` and the ratio
``A / B`` of each predicted score and of ``combined_popularity`` (the mean of the two engagement
scores), the instrumental flag, and each difference times the flag; it then reports 10-fold
stratified cross-validated ROC AUC (overall, instrumental, vocal) of a logistic regression
(paper: 0.600) and of an SVM chosen by an inner grid search (paper: 0.614), with "A won" as the
positive class. Its final feature set uses the engagement scores only (``features="engagement"``);
``features="all"`` adds the five aesthetics, as :func:`apex.training.evaluate.arena_protocol`
does. Features, logistic regression (standardise, ``C=0.1``, balanced classes) and folds are
:mod:`apex.training.arena_cv`'s, shared with that function, so on the same battles and features
both give the same overall AUC.

TIE and BOTH_BAD votes have no winner, and battles whose clips have no prediction (audio not
released, undecodable) cannot be featurised: all are counted and reported, none enters the AUC.
On top of the paper's table we report the direct accuracy of APEX's own preference probability
(``Scorer.compare``), which needs no fitting at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES
from apex.training import arena_cv

#: The paper's reported overall AUCs on Music Arena (Table: arena experiment).
PAPER_AUC: dict[str, float] = {"logistic_regression": 0.600, "svm": 0.614}
#: The notebook's SVM grid (inner 5-fold search on ROC AUC).
SVM_GRID: dict[str, list[Any]] = {
    "svc__estimator__C": [0.01, 0.1, 1, 10],
    "svc__estimator__kernel": ["linear", "rbf"],
    "svc__estimator__gamma": ["scale", "auto"],
}
_DECISIVE = ("A", "B")


class ArenaEvalError(ValueError):
    """The battles or predictions cannot be evaluated; the message says what to fix."""


def features(
    predictions: pd.DataFrame,
    clip_a: Sequence[str],
    clip_b: Sequence[str],
    instrumental: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """The notebook's per-battle features.

    Args:
        predictions: one row per clip (index: clip id), one column per predicted score.
        clip_a, clip_b: ``[N]`` clip ids of each battle (all present in ``predictions``).
        instrumental: ``[N]`` bool.

    Returns:
        ``[N, F]`` float64 features and their ``F`` names.
    """
    scores = {n: predictions[n].to_numpy(np.float64) for n in predictions.columns}
    row = {clip: i for i, clip in enumerate(predictions.index)}
    a = np.array([row[c] for c in clip_a], dtype=np.int64)
    b = np.array([row[c] for c in clip_b], dtype=np.int64)
    return arena_cv.battle_features(scores, a, b, instrumental)


def _groups_auc(y: np.ndarray, score: np.ndarray, instrumental: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for name, mask in (
        ("overall", np.ones_like(instrumental)),
        ("instrumental", instrumental),
        ("vocal", ~instrumental),
    ):
        yy = y[mask]
        out[name] = float(roc_auc_score(yy, score[mask])) if 0 < yy.sum() < len(yy) else np.nan
    return out


def _summary(y: np.ndarray, proba: np.ndarray, instrumental: np.ndarray) -> dict[str, Any]:
    """AUC per group, accuracy (a probability of exactly 0.5 counts half) and F1 for "A won"."""
    from sklearn.metrics import f1_score

    hit = np.where(proba == 0.5, 0.5, (proba > 0.5) == (y == 1))
    return {
        "auc": _groups_auc(y, proba, instrumental),
        "accuracy": float(hit.mean()) if len(y) else np.nan,
        "f1": float(f1_score(y, proba > 0.5, zero_division=0.0)),
    }


def _models(svm: str, seed: int) -> dict[str, Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    models: dict[str, Any] = {"logistic_regression": arena_cv.logistic_regression()}
    # Platt scaling by 5-fold calibration: what SVC(probability=True) did (now deprecated).
    platt = CalibratedClassifierCV(
        SVC(class_weight="balanced", random_state=seed), method="sigmoid", cv=5, ensemble=False
    )
    svc = Pipeline([("scaler", StandardScaler()), ("svc", platt)])
    if svm == "grid":  # the notebook's nested search; costs ~16 x 5 fits per outer fold
        models["svm"] = GridSearchCV(svc, SVM_GRID, cv=5, scoring="roc_auc", n_jobs=1)
    elif svm == "fixed":  # one RBF SVM (C=1): the grid's usual winner, 80x cheaper
        models["svm"] = svc
    elif svm != "off":
        raise ArenaEvalError(f"svm must be 'grid', 'fixed' or 'off', got {svm!r}")
    return models


def _cross_validated(
    x: np.ndarray, y: np.ndarray, instrumental: np.ndarray, *, folds: int, seed: int, svm: str
) -> dict[str, Any]:
    reason = arena_cv.cv_skip_reason(y, folds)
    if reason is not None:
        return {name: {"skipped": reason} for name in _models(svm, seed)}
    out = {}
    for name, model in _models(svm, seed).items():
        proba = arena_cv.cross_validated_proba(model, x, y, folds=folds, seed=seed)
        out[name] = _summary(y, proba, instrumental)
    return out


def _rule(y: np.ndarray, margin: np.ndarray, instrumental: np.ndarray) -> dict[str, Any]:
    """A fixed rule "higher predicted score wins" (the notebook's sigmoid(margin / 10))."""
    return _summary(y, 1.0 / (1.0 + np.exp(-margin / 10.0)), instrumental)


def evaluate_arena(
    battles: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    p_compare: np.ndarray | None = None,
    feature_set: str = "engagement",
    folds: int = 10,
    seed: int = 42,
    svm: str = "grid",
) -> dict[str, Any]:
    """Run the protocol; return a JSON-ready report.

    Args:
        battles: ``clip_a``, ``clip_b``, ``preference`` (A/B/TIE/BOTH_BAD), ``is_instrumental``.
        predictions: index = clip id, columns = predicted scores (any of :data:`SCORE_NAMES`).
        p_compare: ``[len(battles)]`` APEX's P(A preferred) per battle (``Scorer.compare``),
            NaN where unknown; None skips the direct-accuracy row.
        feature_set: ``"engagement"`` (the paper's final features) or ``"all"`` (seven scores).
        folds, seed: outer stratified CV.
        svm: ``"grid"`` (the paper's nested grid search), ``"fixed"`` (one RBF SVM) or ``"off"``.

    Returns:
        ``counts`` (battles per preference, excluded and why), ``features``, ``models`` (per model
        ``auc`` overall/instrumental/vocal, ``accuracy``, ``f1``), ``ties``/``both_bad`` (what APEX
        said about them), ``paper`` (the published AUCs) and the settings used.
    """
    missing = {"clip_a", "clip_b", "preference", "is_instrumental"} - set(battles.columns)
    if missing:
        raise ArenaEvalError(f"battles lack columns {sorted(missing)}")
    wanted = ENGAGEMENT if feature_set == "engagement" else SCORE_NAMES
    if feature_set not in ("engagement", "all"):
        raise ArenaEvalError(f"feature_set must be 'engagement' or 'all', got {feature_set!r}")
    names = [n for n in wanted if n in predictions.columns]
    if not names:
        raise ArenaEvalError(f"predictions have none of {wanted}; got {list(predictions.columns)}")
    preds = predictions[names].dropna()
    pref = battles["preference"].astype(str).to_numpy()
    known = (battles["clip_a"].isin(preds.index) & battles["clip_b"].isin(preds.index)).to_numpy()
    decisive = known & np.isin(pref, _DECISIVE)
    counts = {p: int((pref == p).sum()) for p in ("A", "B", "TIE", "BOTH_BAD")}
    counts |= {
        "battles": len(battles),
        "unscored": int((~known).sum()),
        "used": int(decisive.sum()),
    }
    counts["excluded"] = {
        "TIE": int((known & (pref == "TIE")).sum()),
        "BOTH_BAD": int((known & (pref == "BOTH_BAD")).sum()),
        "no prediction for a clip": counts["unscored"],
    }
    used = battles[decisive]
    y = (pref[decisive] == "A").astype(int)
    instr = used["is_instrumental"].astype(bool).to_numpy()
    counts |= {"used_instrumental": int(instr.sum()), "used_vocal": int((~instr).sum())}
    x, feature_names = features(preds, used["clip_a"], used["clip_b"], instr)
    models = _cross_validated(x, y, instr, folds=folds, seed=seed, svm=svm) if len(y) else {}
    for score, label in (("score_likes", "likes_rule"), ("score_streams", "streams_rule")):
        if score in preds and len(y):
            margin = (
                preds[score].reindex(used["clip_a"]).to_numpy()
                - preds[score].reindex(used["clip_b"]).to_numpy()
            )
            models[label] = _rule(y, margin, instr)
    report: dict[str, Any] = {
        "counts": counts,
        "features": feature_names,
        "models": models,
        "paper": PAPER_AUC,
        "settings": {"feature_set": feature_set, "folds": folds, "seed": seed, "svm": svm},
    }
    if p_compare is not None:
        report |= _compare_section(
            np.asarray(p_compare, np.float64), pref, known, battles, predictions.loc[preds.index]
        )
    return report


def _compare_section(
    p: np.ndarray, pref: np.ndarray, known: np.ndarray, battles: pd.DataFrame, preds: pd.DataFrame
) -> dict[str, Any]:
    """Direct accuracy of APEX's P(A preferred), and what it said on ties and both-bad votes."""
    ok = known & ~np.isnan(p)
    decisive = ok & np.isin(pref, _DECISIVE)
    y = (pref[decisive] == "A").astype(int)
    instr = battles["is_instrumental"].astype(bool).to_numpy()[decisive]
    out: dict[str, Any] = {}
    if len(y):
        out["apex_compare"] = _summary(y, p[decisive], instr)
    confidence = np.abs(p - 0.5)
    out["ties"] = {
        "n": int((ok & (pref == "TIE")).sum()),
        # a model that knows when clips are equally good is less confident on ties
        "mean_confidence_on_ties": _mean(confidence[ok & (pref == "TIE")]),
        "mean_confidence_on_decisive": _mean(confidence[decisive]),
    }
    aesthetic = [a for a in AESTHETICS if a in preds.columns]
    scores = aesthetic or [n for n in SCORE_NAMES if n in preds.columns]
    quality = preds[scores].mean(axis=1)
    pair = (
        quality.reindex(battles["clip_a"]).to_numpy()
        + quality.reindex(battles["clip_b"]).to_numpy()
    ) / 2
    out["both_bad"] = {
        "n": int((ok & (pref == "BOTH_BAD")).sum()),
        "scores": scores,
        "mean_predicted_on_both_bad": _mean(pair[ok & (pref == "BOTH_BAD")]),
        "mean_predicted_on_others": _mean(pair[ok & (pref != "BOTH_BAD")]),
    }
    return out


def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def format_report(report: dict[str, Any]) -> str:
    """The paper's table: one row per model, AUC overall / instrumental / vocal, accuracy, F1."""
    head = f"{'model':<22}{'AUC':>8}{'instr':>8}{'vocal':>8}{'acc':>8}{'F1':>8}{'paper':>8}"
    lines = [head, "-" * len(head)]
    for name, row in report["models"].items():
        if "skipped" in row:
            lines.append(f"{name:<22}  skipped: {row['skipped']}")
            continue
        lines.append(_row(name, row, PAPER_AUC.get(name)))
    if "apex_compare" in report:
        lines.append(_row("apex_compare (direct)", report["apex_compare"], None))
    c = report["counts"]
    lines += [
        "",
        f"battles {c['battles']}: A {c['A']}, B {c['B']}, TIE {c['TIE']}, BOTH_BAD "
        f"{c['BOTH_BAD']}; used {c['used']} decisive ({c['used_instrumental']} instrumental, "
        f"{c['used_vocal']} vocal); excluded: "
        + ", ".join(f"{k} {v}" for k, v in c["excluded"].items()),
    ]
    if "ties" in report:
        t, b = report["ties"], report["both_bad"]
        lines.append(
            f"ties: APEX confidence |p-0.5| {t['mean_confidence_on_ties']:.3f} on {t['n']} ties vs "
            f"{t['mean_confidence_on_decisive']:.3f} on decisive votes; both-bad: mean of "
            f"{len(b['scores'])} predicted scores {b['mean_predicted_on_both_bad']:.3f} on "
            f"{b['n']} vs {b['mean_predicted_on_others']:.3f} elsewhere"
        )
    return "\n".join(lines)


def _row(name: str, row: dict[str, Any], paper: float | None) -> str:
    auc = row["auc"]
    cells = [auc["overall"], auc["instrumental"], auc["vocal"], row["accuracy"], row["f1"]]
    text = "".join(f"{v:>8.3f}" for v in cells)
    return f"{name:<22}{text}{(f'{paper:>8.3f}' if paper is not None else '       -')}"

"""The APEX paper's arena protocol on Music Arena battles (``apex eval arena``), made checkable:
its classifiers (:mod:`apex.evaluation.cv`) under grouped fold schemes, with score orientation,
bootstrap intervals, permutation p-values, counts per board and flags. TIE, BOTH_BAD and battles
with an unscored clip are counted but enter no AUC."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from apex.evaluation import cv
from apex.evaluation import stats as st
from apex.tasks import AESTHETICS, DECISIVE, ENGAGEMENT, PREFERENCES, SCORE_NAMES

#: The paper's figures (``APEX_arena_experiment.ipynb``: 10-fold CV ROC AUC, "A won" positive).
PAPER: dict[str, Any] = {
    "battles": 1259,
    "auc": {"logistic_regression": 0.600, "svm": 0.614},
    "same_sign_accuracy": {"sum_of_seven": 0.454, "likes+streams": 0.488, "score_likes": 0.503},
}
#: The notebook's SVM grid (inner 5-fold search on ROC AUC).
SVM_GRID: dict[str, list[Any]] = {
    "svc__estimator__C": [0.01, 0.1, 1, 10],
    "svc__estimator__kernel": ["linear", "rbf"],
    "svc__estimator__gamma": ["scale", "auto"],
}


class ArenaEvalError(ValueError):
    """The battles or predictions cannot be evaluated; the message says what to fix."""


def _models(svm: str, seed: int) -> dict[str, Any]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    models: dict[str, Any] = {"logistic_regression": cv.logistic_regression()}
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


def evaluate_features(
    x: np.ndarray,
    y: np.ndarray,
    instrumental: np.ndarray,
    groups: Mapping[str, np.ndarray | None],
    *,
    names: list[str] | None = None,
    svm: str = "off",
    folds: int = 10,
    seed: int = 42,
    n_boot: int = 1000,
    n_perm: int = 1000,
) -> dict[str, dict[str, Any]]:
    """Cross-validate the paper's classifiers under every fold scheme in ``groups`` (scheme ->
    ``[N]`` groups kept on one side of every split; None: the paper's folds) on features ``x``
    ``[N, F]`` (``names`` for :func:`reliance`), ``y`` ``[N]`` 1 where A won and ``instrumental``
    ``[N]`` bool; the rest as :func:`evaluate_arena`. Returns per scheme ``label``, ``groups`` (how
    many) and ``models`` (per model :func:`summarise`, ``auc_fold_mean``, ``p_value``,
    ``reliance``) or ``skipped`` with the reason."""
    y = np.asarray(y).astype(int)
    out: dict[str, dict[str, Any]] = {}
    for scheme, g in groups.items():
        entry: dict[str, Any] = {"label": cv.SCHEME_LABELS.get(scheme, scheme)}
        entry["groups"] = None if g is None else len(np.unique(g))
        fold = cv.fold_ids(y, g, folds=folds, seed=seed)
        if isinstance(fold, str):
            out[scheme] = entry | {"skipped": fold}
            continue
        entry["models"] = {}
        for name, model in _models(svm, seed).items():
            proba = cv.cross_validated_proba(model, x, y, fold)
            row = summarise(proba, y, instrumental, n_boot=n_boot, seed=seed)
            # The mean of per-fold AUCs is blind to offsets between folds' predictions, which pull
            # the pooled AUC below 0.5 for a model that only memorises groups.
            per_fold = [st.auc(proba[fold == k], y[fold == k]) for k in np.unique(fold)]
            row["auc_fold_mean"] = _mean(np.array(per_fold))
            if name == "logistic_regression" and n_perm:
                # refit on labels shuffled within the (test fold x board) cells
                strata = fold * 2 + instrumental.astype(int)
                labels = np.vstack([y, st.shuffled_labels(y, strata, n=n_perm, seed=seed)])
                aucs = st.auc(st.logistic_oof_proba(x, labels, fold), labels)
                row |= {
                    "p_value": st.permutation_pvalue(aucs[0], aucs[1:]),
                    "permutations": n_perm,
                    "null_auc_mean": float(np.nanmean(aucs[1:])),
                }
            else:  # a refit per permutation would cost hours for the SVM
                why = f"not computed for {name}: a refit per permutation costs hours; see LR's p"
                row |= {"p_value": None, "p_value_note": why if n_perm else "permutations off"}
            if names is not None:
                row["reliance"] = reliance(proba, x, names)
            entry["models"][name] = row
        out[scheme] = entry
    return out


def evaluate_arena(
    battles: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    p_compare: np.ndarray | None = None,
    feature_set: str = "engagement",
    schemes: Sequence[str] = cv.FOLD_SCHEMES,
    folds: int = 10,
    seed: int = 42,
    svm: str = "grid",
    n_boot: int = 1000,
    n_perm: int = 1000,
) -> dict[str, Any]:
    """Run the protocol and its checks; return a JSON-ready report.

    ``battles`` needs ``clip_a``, ``clip_b``, ``preference`` (A/B/TIE/BOTH_BAD) and
    ``is_instrumental``, grouped schemes also ``prompt``, ``system_a``, ``system_b``;
    ``predictions``: clip id -> predicted scores (NaN: unscored); ``p_compare``:
    ``[len(battles)]`` APEX's P(A preferred) (``Scorer.compare``, NaN where unknown).
    ``feature_set``: ``"engagement"`` (the paper's) or ``"all"`` (seven scores); ``svm``:
    ``"grid"`` (the notebook's nested search over :data:`SVM_GRID`), ``"fixed"`` (one RBF SVM) or
    ``"off"``; ``n_boot``, ``n_perm``: resamples per interval, permutations per p-value. The
    report: ``counts``, ``features``, ``orientation``, ``schemes``, ``rules`` (the notebook's
    fixed rules), ``paper``, ``settings``, ``flags`` (sentences) and, with ``p_compare``,
    ``apex_compare``, ``ties`` and ``both_bad``."""
    names = _feature_scores(battles, predictions, feature_set, schemes, svm, seed)
    scored = predictions[[n for n in SCORE_NAMES if n in predictions.columns]].dropna()
    pref = battles["preference"].astype(str).to_numpy()
    known = (battles["clip_a"].isin(scored.index) & battles["clip_b"].isin(scored.index)).to_numpy()
    decisive = known & np.isin(pref, DECISIVE)
    all_instr = battles["is_instrumental"].astype(bool).to_numpy()
    used = battles[decisive]
    y = (pref[decisive] == "A").astype(int)
    instr = all_instr[decisive]
    scores = {n: scored[n].to_numpy(np.float64) for n in names}
    a, b = scored.index.get_indexer(used["clip_a"]), scored.index.get_indexer(used["clip_b"])
    x, feature_names = cv.battle_features(scores, a, b, instr)
    groups, skipped = _scheme_groups(used, schemes)
    kw = {"n_boot": n_boot, "n_perm": n_perm, "seed": seed}
    orient, results, rules = {}, {}, {}
    if len(y):
        orient = orientation(scored, used["clip_a"], used["clip_b"], y)
        results = evaluate_features(
            x, y, instr, groups, names=feature_names, svm=svm, folds=folds, **kw
        )
        rules = _rules(scored, used, y, instr, **kw)
    results |= {s: {"label": cv.SCHEME_LABELS[s], "skipped": why} for s, why in skipped.items()}
    report: dict[str, Any] = {
        "counts": battle_counts(pref, known, decisive, all_instr),
        "features": feature_names,
        "orientation": orient,
        "schemes": {s: results[s] for s in schemes if s in results},
        "rules": rules,
        "paper": PAPER,
        "settings": {
            "feature_set": feature_set,
            "folds": folds,
            "seed": seed,
            "svm": svm,
            "bootstrap": n_boot,
            "permutations": n_perm,
            "permutation_strata": "test fold x board (fitted models); board (fixed scores)",
        },
    }
    if p_compare is not None:
        p = np.asarray(p_compare, np.float64)
        report |= _compare_section(p, pref, known, all_instr, battles, scored, **kw)
    report["flags"] = flags(report)
    return report


def _feature_scores(
    battles: pd.DataFrame,
    predictions: pd.DataFrame,
    feature_set: str,
    schemes: Sequence[str],
    svm: str,
    seed: int,
) -> list[str]:
    """The scores the features take; raises :class:`ArenaEvalError` before any work."""
    missing = {"clip_a", "clip_b", "preference", "is_instrumental"} - set(battles.columns)
    if missing:
        raise ArenaEvalError(f"battles lack columns {sorted(missing)}")
    if feature_set not in ("engagement", "all"):
        raise ArenaEvalError(f"feature_set must be 'engagement' or 'all', got {feature_set!r}")
    unknown = [s for s in schemes if s not in cv.FOLD_SCHEMES]
    if unknown:
        raise ArenaEvalError(f"unknown fold schemes {unknown}; use {cv.FOLD_SCHEMES}")
    _models(svm, seed)
    wanted = ENGAGEMENT if feature_set == "engagement" else SCORE_NAMES
    names = [n for n in wanted if n in predictions.columns]
    if not names:
        raise ArenaEvalError(f"predictions have none of {wanted}; got {list(predictions.columns)}")
    return names


def _rules(
    scored: pd.DataFrame, used: pd.DataFrame, y: np.ndarray, instr: np.ndarray, **kw: Any
) -> dict[str, Any]:
    """The notebook's fixed rules: P(A wins) = sigmoid((score A - score B) / 10)."""
    rules = {}
    for score, label in (("score_likes", "likes_rule"), ("score_streams", "streams_rule")):
        if score in scored:
            margin = scored[score].loc[used["clip_a"]].to_numpy()
            margin = margin - scored[score].loc[used["clip_b"]].to_numpy()
            rules[label] = summarise(expit(margin / 10.0), y, instr, **kw)
    return rules


def _scheme_groups(
    used: pd.DataFrame, schemes: Sequence[str]
) -> tuple[dict[str, np.ndarray | None], dict[str, str]]:
    """Groups per scheme for the decisive battles, and the schemes that cannot be built."""
    have = {"prompt", "system_a", "system_b"} <= set(used.columns)
    prompts = used["prompt"].astype(str).to_numpy() if have else None
    pairs = cv.pair_labels(used["system_a"], used["system_b"]) if have else None
    groups, skipped = {}, {}
    for s in schemes:
        if s != "paper" and not have:
            skipped[s] = "battles lack the prompt / system_a / system_b columns"
        else:
            groups[s] = cv.scheme_groups(s, prompts, pairs)
    return groups, skipped


def _compare_section(
    p: np.ndarray,
    pref: np.ndarray,
    known: np.ndarray,
    instrumental: np.ndarray,
    battles: pd.DataFrame,
    preds: pd.DataFrame,
    **kw: Any,
) -> dict[str, Any]:
    """APEX's P(A preferred) scored like a rule, and what it said on ties and both-bad votes."""
    ok = known & ~np.isnan(p)
    decisive = ok & np.isin(pref, DECISIVE)
    y = (pref[decisive] == "A").astype(int)
    instr = instrumental[decisive]
    out: dict[str, Any] = {}
    if len(y):
        row = summarise(p[decisive], y, instr, **kw)
        out["apex_compare"] = row | {"orientation": st.agreement(p[decisive] - 0.5, y)}
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
    pair = np.mean([quality.reindex(battles[c]).to_numpy() for c in ("clip_a", "clip_b")], axis=0)
    out["both_bad"] = {
        "n": int((ok & (pref == "BOTH_BAD")).sum()),
        "scores": scores,
        "mean_predicted_on_both_bad": _mean(pair[ok & (pref == "BOTH_BAD")]),
        "mean_predicted_on_others": _mean(pair[ok & (pref != "BOTH_BAD")]),
    }
    return out


def _mean(values: np.ndarray) -> float:
    """Mean of the non-NaN ``values``; NaN when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


# Checks on the protocol's numbers: pure functions over arrays and report dicts.


def boards(instrumental: np.ndarray) -> dict[str, np.ndarray]:
    """Masks ``[N]`` of the three boards: all battles, instrumental, vocal."""
    instr = np.asarray(instrumental, bool)
    return {"overall": np.ones_like(instr), "instrumental": instr, "vocal": ~instr}


def summarise(
    proba: np.ndarray,
    y: np.ndarray,
    instrumental: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    n_perm: int | None = None,
) -> dict[str, Any]:
    """AUC per board and accuracy, each with its bootstrap interval, and F1 for "A won", from
    ``proba`` ``[N]`` P("A won"), ``y`` ``[N]`` 0/1, ``instrumental`` ``[N]`` bool. A board with
    one outcome only has a NaN AUC. With ``n_perm``, for a score that needs no fitting: the
    permutation ``p_value`` of its AUC (labels shuffled within each board)."""
    from sklearn.metrics import f1_score

    out: dict[str, Any] = {"auc": {}, "auc_ci": {}, "n": {}}
    for k, (board, mask) in enumerate(boards(instrumental).items()):
        boot = st.bootstrap(proba[mask], y[mask], n=n_boot, seed=seed + k) if mask.any() else None
        out["auc"][board] = st.auc(proba[mask], y[mask]) if mask.any() else float("nan")
        out["auc_ci"][board] = boot["auc_ci"] if boot else [float("nan")] * 2
        out["n"][board] = int(mask.sum())
        if board == "overall":
            out["accuracy"] = st.accuracy(proba, y) if len(y) else float("nan")
            out["accuracy_ci"] = boot["accuracy_ci"] if boot else [float("nan")] * 2
    out["f1"] = float(f1_score(y, proba > 0.5, zero_division=0.0))
    if n_perm is not None:
        null = st.auc(proba, st.shuffled_labels(y, instrumental, n=n_perm, seed=seed))
        out |= {
            "p_value": st.permutation_pvalue(out["auc"]["overall"], null),
            "permutations": n_perm,
        }
    return out


def orientation(
    preds: pd.DataFrame, clip_a: pd.Series, clip_b: pd.Series, y: np.ndarray
) -> dict[str, dict[str, Any]]:
    """:func:`~apex.evaluation.stats.agreement` of each score's A - B margin with "A won", plus
    the notebook's ``likes+streams`` and ``sum_of_seven`` (raw predictions summed) when their
    scores are present, each with the paper's figure."""
    cols = [n for n in SCORE_NAMES if n in preds.columns]
    a, b = preds.loc[clip_a, cols].to_numpy(), preds.loc[clip_b, cols].to_numpy()
    margins = {n: a[:, i] - b[:, i] for i, n in enumerate(cols)}
    if all(e in cols for e in ENGAGEMENT):
        margins["likes+streams"] = sum(margins[e] for e in ENGAGEMENT)
    if len(cols) == len(SCORE_NAMES):
        margins["sum_of_seven"] = sum(margins[n] for n in SCORE_NAMES)
    paper = PAPER["same_sign_accuracy"]
    return {name: st.agreement(m, y) | {"paper": paper.get(name)} for name, m in margins.items()}


def reliance(proba: np.ndarray, x: np.ndarray, names: list[str]) -> dict[str, float]:
    """Pearson r of a classifier's out-of-fold P("A won") with each score's ``diff_`` feature."""
    out = {}
    for i, name in enumerate(names):
        if name.startswith("diff_") and not name.endswith("_x_instr"):
            col = x[:, i]
            ok = np.ptp(col) > 0 and np.ptp(proba) > 0
            out[name[5:]] = float(np.corrcoef(proba, col)[0, 1]) if ok else 0.0
    return out


def inversion_flag(row: dict[str, Any], orient: Mapping[str, dict[str, Any]]) -> str | None:
    """Why a classifier's AUC above 0.5 rests on an inverted sign (its P(A wins) falls as the
    score it follows most, largest ``|r|``, rises for A), or None."""
    r = row.get("reliance") or {}
    if not r or not row["auc"]["overall"] > 0.5:
        return None
    score = max(r, key=lambda k: abs(r[k]))
    if r[score] >= 0:
        return None
    # combined_popularity is the mean of the engagement scores: the sign of likes+streams
    key = "likes+streams" if score == "combined_popularity" else score
    acc = orient.get(key, {}).get("accuracy", float("nan"))
    return (
        f"AUC {row['auc']['overall']:.3f} rests on an inverted sign: its P(A wins) falls as "
        f"{score} of A rises (r = {r[score]:.2f}; higher-{score}-wins holds in {acc:.3f})"
    )


def flags(report: dict[str, Any]) -> list[str]:
    """Sentences for what a reader must not miss: inverted signs and leakage."""
    out = [
        f"orientation: the clip with the higher {name} loses more often than it wins "
        f"({row['accuracy']:.3f}, 95% CI {row['ci'][0]:.3f}-{row['ci'][1]:.3f}, n={row['n']})"
        for name, row in report["orientation"].items()
        if row["sign"] == "inverted"
    ]
    paper = report["schemes"].get("paper", {}).get("models", {})
    leaks = []
    for scheme, entry in report["schemes"].items():
        for model, row in entry.get("models", {}).items():
            why = inversion_flag(row, report["orientation"])
            if why:
                out.append(f"{model} [{scheme} folds]: {why}")
            base = paper.get(model)
            if scheme != "paper" and base and base["auc"]["overall"] - row["auc"]["overall"] > 0.05:
                leaks.append(
                    f"{model}: AUC {base['auc']['overall']:.3f} on the paper's folds but "
                    f"{row['auc']['overall']:.3f} {entry['label']}: part of it is leakage"
                )
    return out + leaks


def battle_counts(
    pref: np.ndarray, known: np.ndarray, decisive: np.ndarray, instr: np.ndarray
) -> dict[str, Any]:
    """Battles per preference, how many were used and why the others were excluded, per board,
    from ``[N]`` masks over battles: ``known`` (both clips scored), ``decisive`` (used: A or B,
    both scored) and ``instr`` (instrumental); ``pref`` ``[N]`` the preferences."""
    counts: dict[str, Any] = {p: int((pref == p).sum()) for p in PREFERENCES}
    counts |= {"battles": len(pref), "unscored": int((~known).sum()), "used": int(decisive.sum())}
    counts["excluded"] = {p: int((known & (pref == p)).sum()) for p in ("TIE", "BOTH_BAD")}
    counts["excluded"]["no prediction for a clip"] = counts["unscored"]
    counts |= {
        "used_instrumental": int((decisive & instr).sum()),
        "used_vocal": int((decisive & ~instr).sum()),
        "boards": {},
    }
    for board, mask in boards(instr).items():
        row = {"battles": int(mask.sum())}
        row |= {p: int((mask & (pref == p)).sum()) for p in PREFERENCES}
        row |= {"decisive": int((mask & decisive).sum()), "unscored": int((mask & ~known).sum())}
        counts["boards"][board] = row
    return counts

"""Checks on the arena protocol's numbers: intervals, orientation, reliance, flags, counts.

Pure functions over arrays and the report dicts of :func:`apex.evaluation.arena.evaluate_arena`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from apex.evaluation import stats as st
from apex.tasks import ENGAGEMENT, PREFERENCES, SCORE_NAMES


def boards(instrumental: np.ndarray) -> dict[str, np.ndarray]:
    """Masks ``[N]`` of the three boards: all battles, instrumental, vocal."""
    instrumental = np.asarray(instrumental, bool)
    return {
        "overall": np.ones_like(instrumental),
        "instrumental": instrumental,
        "vocal": ~instrumental,
    }


def summarise(
    proba: np.ndarray, y: np.ndarray, instrumental: np.ndarray, *, n_boot: int, seed: int
) -> dict[str, Any]:
    """AUC per board and accuracy, each with its bootstrap interval, and F1 for "A won".

    ``proba`` ``[N]`` P("A won"), ``y`` ``[N]`` 0/1, ``instrumental`` ``[N]`` bool. A board with
    one outcome only has a NaN AUC.
    """
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
    return out


def fixed_score_row(
    proba: np.ndarray,
    y: np.ndarray,
    instrumental: np.ndarray,
    *,
    n_boot: int,
    n_perm: int,
    seed: int,
) -> dict[str, Any]:
    """:func:`summarise` plus a permutation p-value for a score that needs no fitting."""
    row = summarise(proba, y, instrumental, n_boot=n_boot, seed=seed)
    null = st.auc(proba, st.shuffled_labels(y, instrumental, n=n_perm, seed=seed))
    return row | {
        "p_value": st.permutation_pvalue(row["auc"]["overall"], null),
        "permutations": n_perm,
    }


def orientation(
    preds: pd.DataFrame,
    clip_a: pd.Series,
    clip_b: pd.Series,
    y: np.ndarray,
    paper: Mapping[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`~apex.evaluation.stats.agreement` of each score's A - B margin with "A won".

    One entry per predicted score, plus the notebook's ``likes+streams`` and ``sum_of_seven``
    (raw predictions summed) when their scores are present, with ``paper``'s figure if any.
    """
    paper = paper or {}
    cols = [n for n in SCORE_NAMES if n in preds.columns]
    a, b = preds.loc[clip_a, cols].to_numpy(), preds.loc[clip_b, cols].to_numpy()
    margins = {n: a[:, i] - b[:, i] for i, n in enumerate(cols)}
    if all(e in cols for e in ENGAGEMENT):
        margins["likes+streams"] = sum(margins[e] for e in ENGAGEMENT)
    if len(cols) == len(SCORE_NAMES):
        margins["sum_of_seven"] = sum(margins[n] for n in SCORE_NAMES)
    out = {}
    for name, margin in margins.items():
        out[name] = st.agreement(margin, y) | {"paper": paper.get(name)}
    return out


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
    """Battles per preference, how many were used and why the others were excluded, per board.

    All ``[N]`` over battles: ``pref`` the preference, ``known`` both clips scored, ``decisive``
    used (A or B, both scored), ``instr`` instrumental. ``boards`` holds per board ``battles``,
    each preference, ``decisive`` and ``unscored``.
    """
    counts: dict[str, Any] = {p: int((pref == p).sum()) for p in PREFERENCES}
    counts |= {"battles": len(pref), "unscored": int((~known).sum()), "used": int(decisive.sum())}
    counts["excluded"] = {
        "TIE": int((known & (pref == "TIE")).sum()),
        "BOTH_BAD": int((known & (pref == "BOTH_BAD")).sum()),
        "no prediction for a clip": counts["unscored"],
    }
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

"""A model's figures (:func:`evaluate_model`, the report the refit gate compares): regression per
score, held-out battle accuracy/AUC and the arena protocol; :func:`format_table` prints reports
side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats
from torch import nn

from apex.evaluation import cv as arena_cv
from apex.evaluation import stats as arena_stats
from apex.evaluation.report import number_cell
from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES
from apex.training.battles import Battles
from apex.training.data import EngagementData, known_targets
from apex.training.loop import predict


def preference_utility(outputs: Mapping[str, np.ndarray], use_head: bool) -> np.ndarray:
    """Per-clip utility ``[N]`` whose differences rank clips in a battle: the trained
    ``preference`` logit when ``use_head`` and present, else the fixed link of
    :data:`apex.heads.LINK_WEIGHTS` over the predicted scores."""
    if use_head and "preference" in outputs:
        return np.asarray(outputs["preference"], dtype=np.float64)
    from apex.heads import LINK_WEIGHTS

    return sum(
        w * np.asarray(outputs[k], np.float64) for k, w in LINK_WEIGHTS.items() if k in outputs
    )


def pairwise_metrics(utility: np.ndarray, battles: Battles) -> dict[str, float]:
    """Accuracy and AUC of ``utility[a] - utility[b]`` on decisive (non-TIE) battles.

    A zero margin counts as half right; ``auc`` is NaN when the votes hold only one outcome.
    """
    decisive = battles.y != 0.5
    margin = utility[battles.a[decisive]] - utility[battles.b[decisive]]
    won = battles.y[decisive] == 1.0
    n = int(decisive.sum())
    if n == 0:
        return {"accuracy": float("nan"), "auc": float("nan"), "n": 0, "ties": len(battles)}
    correct = np.where(margin == 0, 0.5, (margin > 0) == won)
    auc = arena_stats.auc(margin, won)
    return {"accuracy": float(np.mean(correct)), "auc": auc, "n": n, "ties": len(battles) - n}


def arena_protocol(
    outputs: Mapping[str, np.ndarray],
    battles: Battles,
    *,
    seed: int = 42,
    folds: int = 10,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The paper's arena experiment (:mod:`apex.evaluation.cv`) on the decisive battles: ``auc``
    of the out-of-fold P("A won") under the paper's ``folds`` (shuffled with ``seed``), its 95 %
    bootstrap interval ``auc_ci`` and ``n``; NaN when an outcome has fewer than ``folds`` battles.
    """
    decisive = battles.y != 0.5
    y = (battles.y[decisive] == 1.0).astype(int)
    fold = arena_cv.fold_ids(y, None, folds=folds, seed=seed)
    if isinstance(fold, str):
        return {"auc": float("nan"), "auc_ci": [float("nan")] * 2, "n": len(y)}
    scores = {n: outputs[n] for n in SCORE_NAMES if n in outputs}
    instr = battles.is_instrumental[decisive]
    x, _ = arena_cv.battle_features(scores, battles.a[decisive], battles.b[decisive], instr)
    model = arena_cv.logistic_regression()
    proba = arena_cv.cross_validated_proba(model, x, y, fold)
    ci = arena_stats.bootstrap(proba, y, n=n_boot, seed=seed)["auc_ci"]
    return {"auc": arena_stats.auc(proba, y), "auc_ci": ci, "n": len(y)}


def evaluate_model(
    model: nn.Module,
    data: EngagementData,
    *,
    battles: Battles | None = None,
    use_preference: bool = False,
    tasks: Sequence[str] | None = None,
) -> dict:
    """JSON-ready report of ``model`` on the held-out songs (``test`` split, else ``val``):
    ``n_songs``, ``regression`` per score (``{score: {mse, mae, pearson, spearman, n}}`` over
    songs with a known target, n >= 3) and, given battles, ``pairwise`` and ``arena``.
    ``tasks`` limits the scores used to those the model was trained on."""
    songs = _held_out(data)
    outputs = predict(model, data.song_x)
    if tasks is not None:  # outputs a model was never trained on are noise: leave them out
        keep = {*tasks, *(f"{t}_std" for t in tasks), "preference"}
        outputs = {k: v for k, v in outputs.items() if k in keep}
    regression = {}
    for name, known, true in known_targets(outputs, data.targets[songs], min_known=3):
        pred = np.asarray(outputs[name][songs], np.float64)[known]
        constant = np.ptp(pred) == 0 or np.ptp(true) == 0
        regression[name] = {
            "mse": float(np.mean((pred - true) ** 2)),
            "mae": float(np.mean(np.abs(pred - true))),
            "pearson": float("nan") if constant else float(stats.pearsonr(pred, true)[0]),
            "spearman": float("nan") if constant else float(stats.spearmanr(pred, true)[0]),
            "n": int(known.sum()),
        }
    report: dict = {"n_songs": len(songs), "regression": regression}
    if battles is not None and len(battles):
        report["pairwise"] = pairwise_metrics(preference_utility(outputs, use_preference), battles)
        report["arena"] = arena_protocol(outputs, battles)
    return report


def _held_out(data: EngagementData) -> np.ndarray:
    """The ``test`` split's songs, or ``val``'s when there is no test split."""
    songs = data.songs_in("test")
    return songs if len(songs) else data.songs_in("val")


def engagement_spearman(report: Mapping) -> float:
    """Mean Spearman of the engagement scores in ``report["regression"]`` (NaN if none)."""
    values = [report["regression"][e]["spearman"] for e in ENGAGEMENT if e in report["regression"]]
    return float(np.mean(values)) if values else float("nan")


def format_table(reports: Mapping[str, Mapping]) -> str:
    """A readable table: one column per named report, rows = Spearman per score + battle metrics."""
    names = list(reports)
    rows: list[tuple[str, list[str]]] = []
    for score in SCORE_NAMES:
        cells = [reports[n].get("regression", {}).get(score, {}).get("spearman") for n in names]
        if any(c is not None for c in cells):
            rows.append((f"spearman {score}", [number_cell(c, 0) for c in cells]))
    for section, key in (("pairwise", "accuracy"), ("pairwise", "auc"), ("arena", "auc")):
        cells = [reports[n].get(section, {}).get(key) for n in names]
        if any(c is not None for c in cells):
            rows.append((f"{section} {key}", [number_cell(c, 0) for c in cells]))
    width = max([len(r[0]) for r in rows] + [6])
    cols = [max(len(n), 7) for n in names]
    lines = [
        "  ".join([label.ljust(width), *(c.rjust(w) for c, w in zip(cells, cols, strict=True))])
        for label, cells in [("", names), *rows]
    ]
    return "\n".join(lines)


def spearman_noise(a: nn.Module, b: nn.Module, data: EngagementData) -> dict[str, float]:
    """Sampling noise of the Spearman difference between two models on the held-out songs: the
    standard deviation, over 200 seeded paired bootstraps of the songs, of the mean Spearman of
    ``a`` minus that of ``b`` over the engagement scores (``"spearman"``) and the aesthetics
    (``"aesthetics"``); NaN where either model lacks the scores."""
    songs = _held_out(data)
    out_a, out_b = predict(a, data.song_x[songs]), predict(b, data.song_x[songs])
    targets = data.targets[songs]
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(songs), len(songs)) for _ in range(200)]
    noise = {}
    for key, names in (("spearman", ENGAGEMENT), ("aesthetics", AESTHETICS)):
        shared = [n for n in names if n in out_a and n in out_b]
        diffs = []
        for idx in draws:
            a_draw = {n: out_a[n][idx] for n in shared}
            per = [  # scores with fewer than 4 known targets in this resample are left out
                stats.spearmanr(a_draw[n][known], t)[0]
                - stats.spearmanr(out_b[n][idx][known], t)[0]
                for n, known, t in known_targets(a_draw, targets[idx], min_known=4)
            ]
            if per and np.all(np.isfinite(per)):
                diffs.append(float(np.mean(per)))
        noise[key] = float(np.std(diffs)) if len(diffs) > 1 else float("nan")
    return noise

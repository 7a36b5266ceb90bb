"""The refit gate: promote a challenger only if no gated metric is worse than the serving one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apex.evaluation.metrics import engagement_spearman
from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES
from apex.training.config import GateConfig


@dataclass
class Decision:
    """The gate's verdict and reasons; ``challenger``/``champion``: :func:`key_metrics` of each
    (``champion``: the model serving, None when it could not be evaluated)."""

    promote: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None


#: Largest mean absolute change per score on held-out songs an anchored refit may make
#: (0-100 engagement: 2 points; 1-5 aesthetics: 0.1).
DRIFT_BOUNDS: dict[str, float] = {n: 2.0 if n in ENGAGEMENT else 0.1 for n in SCORE_NAMES}
#: Gated metrics: key -> (GateConfig tolerance attribute, label for people).
GATED: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy_tolerance", "held-out pairwise accuracy"),
    "spearman": ("spearman_tolerance", "engagement Spearman"),
    "aesthetics": ("spearman_tolerance", "aesthetics Spearman"),
}


def gate(
    challenger: dict,
    champion: dict | None,
    config: GateConfig = GateConfig(),
    noise: dict[str, float] | None = None,
    drift: dict[str, float] | None = None,
) -> Decision:
    """Decide from both models' :func:`~apex.evaluation.metrics.evaluate_model` reports on the same
    held-out data: promotion needs ``config.min_battles`` held-out decisive battles and a
    challenger not worse beyond tolerance on every gated metric the serving model has a figure
    for (a NaN challenger metric fails); no serving report, no promotion. ``noise`` (per-Spearman
    paired-bootstrap sd) widens those tolerances; ``drift`` (anchored refits) must stay within
    :data:`DRIFT_BOUNDS`."""
    noise = noise or {}
    ch = key_metrics(challenger)
    if champion is None:
        why = "no serving model could be evaluated on the same held-out data: nothing to compare"
        return Decision(False, [why], ch, None)
    cp = key_metrics(champion)
    reasons, ok = [], True
    if ch["battles"] < config.min_battles:
        ok = False
        reasons.append(
            f"only {ch['battles']} held-out decisive battles (< {config.min_battles}); "
            "collect more votes before replacing the serving model"
        )
    for key, (tol_name, label) in GATED.items():
        new, old, tol = ch[key], cp[key], getattr(config, tol_name)
        if key != "accuracy" and np.isfinite(noise.get(key, float("nan"))):
            tol = round(max(tol, noise[key]), 3)
        if not np.isfinite(old) and key != "accuracy":
            continue  # no serving figure (no such scores or no targets): nothing to hold it to
        if not np.isfinite(new):
            ok = False
            reasons.append(f"challenger {label} is undefined on the held-out data")
        elif np.isfinite(old) and new < old - tol:
            ok = False
            reasons.append(
                f"{label} {new:.3f} is worse than the serving model's {old:.3f} by more than {tol}"
            )
        else:
            reasons.append(f"{label} {new:.3f} vs serving {old:.3f} (tolerance {tol}): ok")
    if drift is not None:
        problems = [
            f"{name} moved by {value:.3f} on average on held-out songs (bound {DRIFT_BOUNDS[name]})"
            for name, value in drift.items()
            if not value <= DRIFT_BOUNDS[name]
        ]
        ok = ok and bool(drift) and not problems
        if problems or not drift:
            reasons += problems or ["the scores' drift could not be measured on held-out songs"]
        else:
            worst = max(drift, key=lambda n: drift[n] / DRIFT_BOUNDS[n])
            reasons.append(
                f"scores anchored: largest drift {worst} {drift[worst]:.3f} on held-out songs "
                f"(bound {DRIFT_BOUNDS[worst]}): ok"
            )
    return Decision(ok, reasons, ch, cp)


def key_metrics(report: dict) -> dict[str, float]:
    """``accuracy``, ``auc``, ``battles`` (decisive), ``spearman`` (engagement mean) and
    ``aesthetics`` (mean Spearman of the five) of one report."""
    pair = report.get("pairwise", {})
    reg = report.get("regression", {})
    aes = [reg[a]["spearman"] for a in AESTHETICS if a in reg]
    return {
        "accuracy": float(pair.get("accuracy", float("nan"))),
        "auc": float(pair.get("auc", float("nan"))),
        "battles": int(pair.get("n", 0)),
        "spearman": engagement_spearman(report),
        "aesthetics": float(np.mean(aes)) if aes else float("nan"),
    }

"""The arena report for people: :func:`format_report` renders the dict of
:func:`apex.evaluation.arena.evaluate_arena` as text."""

from __future__ import annotations

from typing import Any

from apex.tasks import PREFERENCES

_BOARD_COLS = ("battles", "decisive", *PREFERENCES, "unscored")


def number_cell(value: float | None, width: int = 6, digits: int = 3) -> str:
    """``value`` to ``digits`` decimals right-aligned in ``width``; ``-`` for None."""
    return "-".rjust(width) if value is None else f"{value:>{width}.{digits}f}"


def _ci(ci: list[float]) -> str:
    return "[  nan ]" if ci[0] != ci[0] else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _counts(c: dict[str, Any]) -> list[str]:
    lines = ["Battles by board", f"{'board':<14}" + "".join(f"{k:>10}" for k in _BOARD_COLS)]
    for board, row in c["boards"].items():
        lines.append(f"{board:<14}" + "".join(f"{row[k]:>10}" for k in _BOARD_COLS))
    lines.append(
        f"used {c['used']} decisive battles with both clips scored; excluded: "
        + ", ".join(f"{k} {v}" for k, v in c["excluded"].items())
    )
    return lines


def _orientation(orient: dict[str, Any]) -> list[str]:
    head = f"{'score':<16}{'n':>6}{'acc':>8}  {'95% CI':<16}{'p':>8}  {'sign':<10}{'paper':>6}"
    lines = [
        "Orientation, before any fitting: how often does the clip with the higher score win?",
        head,
        "-" * len(head),
    ]
    for name, r in orient.items():
        lines.append(
            f"{name:<16}{r['n']:>6}{number_cell(r['accuracy'], 8)}  {_ci(r['ci']):<16}"
            f"{r['p']:>8.1e}  {r['sign']:<10}{number_cell(r.get('paper'))}"
        )
    return lines


def _model_line(name: str, row: dict[str, Any], paper: float | None = None) -> str:
    auc, ci = row["auc"], row["auc_ci"]
    return (
        f"{name:<22}{number_cell(auc['overall'])} {_ci(ci['overall']):<16}"
        f"{number_cell(auc['instrumental'])} {_ci(ci['instrumental']):<16}"
        f"{number_cell(auc['vocal'])} {_ci(ci['vocal']):<16}"
        f"{number_cell(row['accuracy'])} {_ci(row['accuracy_ci']):<16}"
        f"{number_cell(row.get('p_value'), 8, 4)}{number_cell(row.get('auc_fold_mean'), 10)}"
        f"{number_cell(paper, 7)}"
    )


def _table_head() -> list[str]:
    head = (
        f"{'model':<22}{'AUC':>6} {'95% CI':<16}{'instr':>6} {'95% CI':<16}{'vocal':>6} "
        f"{'95% CI':<16}{'acc':>6} {'95% CI':<16}{'p':>8}{'AUC/fold':>10}{'paper':>7}"
    )
    return [head, "-" * len(head)]


def _schemes(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    lines = [
        f"Classifiers: {s['folds']}-fold CV on {s['feature_set']} features; "
        f"AUC / accuracy with {s['bootstrap']}-resample bootstrap 95% CIs; p: permutation test "
        f"({s['permutations']} refits, labels shuffled within test fold x board), H0 = chance; "
        "AUC/fold: mean of the per-fold AUCs",
    ]
    paper = report["paper"]["auc"]
    for scheme, entry in report["schemes"].items():
        groups = f", {entry['groups']} groups" if entry.get("groups") else ""
        lines += ["", f"[{scheme}] {entry['label']}{groups}"]
        if "skipped" in entry:
            lines.append(f"  skipped: {entry['skipped']}")
            continue
        lines += _table_head()
        for name, row in entry["models"].items():
            lines.append(_model_line(name, row, paper.get(name) if scheme == "paper" else None))
    return lines


def _fixed(report: dict[str, Any]) -> list[str]:
    rows = dict(report.get("rules", {}))
    if "apex_compare" in report:
        rows["apex_compare (direct)"] = report["apex_compare"]
    if not rows:
        return []
    lines = ["", "Fixed scores (no fitting, so the same under every fold scheme)", *_table_head()]
    lines += [_model_line(name, row) for name, row in rows.items()]
    if "ties" in report:
        t, b = report["ties"], report["both_bad"]
        lines.append(
            f"ties: APEX confidence |p-0.5| {t['mean_confidence_on_ties']:.3f} on {t['n']} ties vs "
            f"{t['mean_confidence_on_decisive']:.3f} on decisive votes; both-bad: mean of "
            f"{len(b['scores'])} predicted scores {b['mean_predicted_on_both_bad']:.3f} on "
            f"{b['n']} vs {b['mean_predicted_on_others']:.3f} elsewhere"
        )
    return lines


def format_report(report: dict[str, Any]) -> str:
    """Counts by board, the orientation table, a table per fold scheme, fixed scores, flags."""
    lines: list[str] = []
    model = report.get("model")
    if model:
        demo = "  [DEMO MODEL: says nothing about APEX]" if model.get("is_demo") else ""
        named = f" (--model {model['spec']})" if model.get("spec") else ""
        name = f"{model.get('model_id')} {model.get('version') or ''}".strip()
        lines += [f"model {name}{named}{demo}", ""]
    lines += _counts(report["counts"])
    if report["orientation"]:
        lines += ["", *_orientation(report["orientation"])]
    lines += ["", *_schemes(report), *_fixed(report)]
    p = report["paper"]
    lines += [
        "",
        f"paper: AUC {p['auc']['logistic_regression']:.3f} logistic regression, "
        f"{p['auc']['svm']:.3f} SVM on {p['battles']:,} battles (its folds only, no intervals)",
    ]
    if report["flags"]:
        lines += ["", "Flags:", *(f"- {f}" for f in report["flags"])]
    else:
        lines += ["", "Flags: none (no inverted sign, no leakage gap above 0.05 AUC)"]
    return "\n".join(lines)

"""How often APEX's pick is the listeners' (:func:`agreement`), and per model version over time
(:func:`agreement_by_version`: one line per version on the Leaderboard)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotation.ratings import require_columns
from apex.evaluation.stats import wilson_interval
from apex.tasks import DECISIVE

COLUMNS = ("version", "start", "end", "time", "agree", "n", "rate", "ci_low", "ci_high")


def agreement(votes: pd.DataFrame) -> dict[str, float | int]:
    """How often APEX's preferred clip is the one listeners chose.

    ``votes``: ``preference`` and ``apex_p_a`` (0-1); TIE, BOTH_BAD and rows where APEX has no
    preference (``apex_p_a`` missing or 0.5) are left out. Returns ``agree``, ``n``, ``rate``
    (NaN when n = 0) and its Wilson 95% interval ``ci_low``, ``ci_high``.
    """
    require_columns(votes, ("preference", "apex_p_a"))
    p_a = pd.to_numeric(votes["apex_p_a"], errors="raise").to_numpy(dtype=np.float64)
    if np.any((p_a < 0) | (p_a > 1)):
        raise ValueError("apex_p_a must be a probability in [0, 1]")
    pref = votes["preference"].to_numpy()
    decided = np.isin(pref, DECISIVE) & ~np.isnan(p_a) & (p_a != 0.5)
    agree = int(np.sum((pref[decided] == "A") == (p_a[decided] > 0.5)))  # the same pick
    n = int(decided.sum())
    low, high = wilson_interval(agree, n)
    rate = agree / n if n else float("nan")
    return {"agree": agree, "n": n, "rate": rate, "ci_low": low, "ci_high": high}


def agreement_by_version(
    votes: pd.DataFrame, *, windows: int = 6, min_votes: int = 10
) -> pd.DataFrame:
    """Agreement per model version (the one whose prediction the voter saw) and time window:
    at most ``windows`` per version, each of at least ``min_votes`` decided votes (or one).

    ``votes``: ``timestamp`` (Unix seconds), ``preference``, ``apex_p_a``, ``apex_model_version``
    (rows without one are left out). Returns one row per (version, window), versions in order of
    their first vote: ``start``, ``end``, ``time`` (bounds and median, Unix seconds) and
    :func:`agreement`'s columns.
    """
    require_columns(votes, ("timestamp", "preference", "apex_p_a", "apex_model_version"))
    p_a = pd.to_numeric(votes["apex_p_a"], errors="coerce")
    keep = votes["preference"].isin(DECISIVE) & p_a.notna() & (p_a != 0.5)
    keep &= votes["apex_model_version"].notna()
    decided = votes[keep].assign(apex_p_a=p_a[keep]).sort_values("timestamp", kind="stable")
    rows = []
    first_seen = decided.groupby("apex_model_version", sort=False)["timestamp"].min()
    for version in first_seen.sort_values().index:
        group = decided[decided["apex_model_version"] == version]
        k = int(max(1, min(windows, len(group) // max(1, min_votes))))
        for part in np.array_split(np.arange(len(group)), k):
            chunk = group.iloc[part]
            stamps = pd.to_numeric(chunk["timestamp"]).to_numpy(float)
            start, end, middle = float(stamps.min()), float(stamps.max()), float(np.median(stamps))
            window = {"version": str(version), "start": start, "end": end, "time": middle}
            rows.append({**window, **agreement(chunk)})
    return pd.DataFrame(rows, columns=list(COLUMNS))

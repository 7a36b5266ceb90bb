"""Agreement per model version over time: windows in time order, Wilson intervals, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from annotation.agreement import agreement, agreement_by_version
from apex.evaluation.stats import wilson_interval


def _votes(version: str, n: int, agree_every: int, start: float) -> pd.DataFrame:
    pref = np.where(np.arange(n) % agree_every == 0, "B", "A")  # APEX always says A
    return pd.DataFrame(
        {
            "timestamp": start + np.arange(n, dtype=float),
            "preference": pref,
            "apex_p_a": 0.8,
            "apex_model_version": version,
        }
    )


def test_one_row_per_window_of_each_version_in_order() -> None:
    old = _votes("demo@1", 40, agree_every=2, start=0.0)  # agrees on half
    new = _votes("refit@v0001", 40, agree_every=4, start=100.0)  # agrees on three quarters
    extra = pd.DataFrame(
        {
            "timestamp": [5.0, 6.0, 7.0],
            "preference": ["TIE", "A", "A"],
            "apex_p_a": [0.8, None, 0.5],
            "apex_model_version": ["demo@1", "demo@1", "demo@1"],
        }
    )
    table = agreement_by_version(pd.concat([new, extra, old]), windows=2, min_votes=10)
    assert list(table["version"]) == ["demo@1", "demo@1", "refit@v0001", "refit@v0001"]
    assert table["n"].tolist() == [20, 20, 20, 20]  # tie, no prediction, no preference: out
    demo, refit = table[table["version"] == "demo@1"], table[table["version"] == "refit@v0001"]
    assert demo["rate"].tolist() == [0.5, 0.5] and refit["rate"].tolist() == [0.75, 0.75]
    assert (table["start"] <= table["time"]).all() and (table["time"] <= table["end"]).all()
    assert demo["end"].iloc[0] < demo["start"].iloc[1]
    low, high = wilson_interval(15, 20)
    assert refit["ci_low"].iloc[0] == pytest.approx(low)
    assert refit["ci_high"].iloc[0] == pytest.approx(high)


def test_few_votes_give_one_window_and_missing_columns_say_which() -> None:
    table = agreement_by_version(_votes("v", 7, 2, 0.0), windows=6, min_votes=10)
    assert len(table) == 1 and table["n"].iloc[0] == 7
    with pytest.raises(ValueError, match="apex_model_version"):
        agreement_by_version(pd.DataFrame({"timestamp": [], "preference": [], "apex_p_a": []}))


def test_agreement_on_a_hand_made_table():
    votes = pd.DataFrame(
        {
            "preference": ["A", "A", "B", "B", "A", "TIE", "BOTH_BAD", "A", "B", "A"],
            "apex_p_a": [0.9, 0.6, 0.2, 0.7, 0.3, 0.9, 0.1, 0.5, np.nan, 0.8],
        }
    )
    result = agreement(votes)
    # Compared: rows 0-4 and 9 (tie, both-bad, p = 0.5 and missing p left out); agree: 0, 1, 2, 9.
    assert result["n"] == 6
    assert result["agree"] == 4
    assert result["rate"] == pytest.approx(4 / 6)
    assert result["ci_low"] < 4 / 6 < result["ci_high"]


def test_agreement_wilson_interval_matches_the_textbook_value():
    votes = pd.DataFrame({"preference": ["A"] * 10, "apex_p_a": [0.9] * 8 + [0.1] * 2})
    result = agreement(votes)
    # Wilson 95% interval for 8/10 (e.g. Newcombe 1998): 0.490 to 0.943.
    assert result["ci_low"] == pytest.approx(0.4902, abs=1e-4)
    assert result["ci_high"] == pytest.approx(0.9433, abs=1e-4)


def test_agreement_with_nothing_to_compare():
    result = agreement(pd.DataFrame({"preference": ["TIE"], "apex_p_a": [0.7]}))
    assert result["n"] == 0 and math.isnan(result["rate"])
    assert (result["ci_low"], result["ci_high"]) == (0.0, 1.0)

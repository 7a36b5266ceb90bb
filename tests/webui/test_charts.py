"""Figures (:mod:`webui.charts`)."""

from __future__ import annotations

import pandas as pd

from webui import charts


def test_ratings_chart_draws_asymmetric_ci() -> None:
    board = pd.DataFrame(
        {
            "system": ["x", "y"],
            "rating": [1010.0, 990.0],
            "ci_low": [1000.0, 950.0],
            "ci_high": [1030.0, 995.0],
        }
    )
    fig = charts.ratings_chart(board)
    trace = fig.data[0]
    assert list(trace.y) == ["y", "x"]  # best on top
    assert list(trace.error_x.array) == [5.0, 20.0]
    assert list(trace.error_x.arrayminus) == [40.0, 10.0]

"""Plotly figures for the tabs (radar, timeline, ratings and agreement with CI bars): pure
functions from dicts and DataFrames to ``go.Figure``, on the score ranges of :mod:`apex.tasks`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES, SCORE_RANGES

#: Series colours (colour-blind safe Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")

_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 40, "r": 20, "t": 50, "b": 40},
    "legend": {"orientation": "h", "y": -0.15},
    "height": 380,
}


def pretty(name: str) -> str:
    """Human label of a score name (``score_streams`` -> ``Streams``)."""
    return name.removeprefix("score_").replace("_", " ").capitalize()


def radar(series: Mapping[str, Mapping[str, float]], title: str = "Aesthetics (1-5)") -> Any:
    """Radar chart of the aesthetic scores (1-5) every series (label -> scores) has; an empty
    figure saying so for a model without aesthetics (a ``popularity`` checkpoint)."""
    import plotly.graph_objects as go

    names = [n for n in AESTHETICS if all(n in scores for scores in series.values())]
    fig = go.Figure()
    if not names:
        fig.update_layout(
            **_LAYOUT, title=title, xaxis={"visible": False}, yaxis={"visible": False}
        )
        fig.add_annotation(
            text="This model predicts no aesthetic scores.", showarrow=False, font={"size": 14}
        )
        return fig
    axes = [pretty(n) for n in names]
    for i, (label, scores) in enumerate(series.items()):
        values = [float(scores[n]) for n in names]
        fig.add_trace(
            go.Scatterpolar(
                r=[*values, values[0]],  # close the polygon
                theta=[*axes, axes[0]],
                fill="toself",
                name=label,
                line={"color": PALETTE[i % len(PALETTE)]},
                opacity=0.7,
            )
        )
    fig.update_layout(
        **_LAYOUT,
        title=title,
        polar={
            "radialaxis": {"range": list(SCORE_RANGES[AESTHETICS[0]]), "tickvals": [1, 2, 3, 4, 5]}
        },
        showlegend=len(series) > 1,
    )
    return fig


def timeline(segments: Sequence[Mapping[str, float]]) -> Any:
    """Engagement (0-100) above, aesthetics (1-5) below, against time; ``segments``: each
    ``{"start_s", "end_s", **scores}`` (seconds)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Engagement (0-100)", "Aesthetics (1-5)"),
    )
    # A point at each (30 s) segment's middle: where its score "belongs" on the time axis.
    mids = [(float(s["start_s"]) + float(s["end_s"])) / 2 for s in segments]
    mode = "lines+markers" if len(segments) > 1 else "markers"
    for row, names in ((1, ENGAGEMENT), (2, AESTHETICS)):
        for name in (n for n in names if segments and n in segments[0]):
            colour = PALETTE[SCORE_NAMES.index(name)]  # seven colours, seven scores
            values = [float(s[name]) for s in segments]
            trace = go.Scatter(
                x=mids, y=values, mode=mode, name=pretty(name), line={"color": colour}
            )
            fig.add_trace(trace, row=row, col=1)
        fig.update_yaxes(range=list(SCORE_RANGES[names[0]]), row=row, col=1)
    fig.update_xaxes(range=[0, max((float(s["end_s"]) for s in segments), default=30.0)])
    fig.update_xaxes(title_text="time (s)", row=2, col=1)
    fig.update_layout(**{**_LAYOUT, "height": 460}, title="Scores along the song")
    return fig


def _ci_bars(value: Any, rows: Any) -> dict[str, Any]:
    """Asymmetric error bars from ``value`` to the ``ci_low``/``ci_high`` columns of ``rows``."""
    return {
        "type": "data",
        "symmetric": False,
        "array": (rows["ci_high"].astype(float) - value).clip(lower=0),
        "arrayminus": (value - rows["ci_low"].astype(float)).clip(lower=0),
    }


def ratings_chart(board: Any, title: str = "Bradley-Terry rating with 95% CI") -> Any:
    """Horizontal points with CI bars, best on top; ``board`` has columns ``system``,
    ``rating``, ``ci_low``, ``ci_high``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(board):
        ordered = board.sort_values("rating")
        rating = ordered["rating"].astype(float)
        fig.add_trace(
            go.Scatter(
                x=rating,
                y=ordered["system"].astype(str),
                mode="markers",
                marker={"size": 11, "color": PALETTE[0]},
                error_x=_ci_bars(rating, ordered),
                name="rating",
                hovertemplate="%{y}: %{x:.0f}<extra></extra>",
            )
        )
    fig.add_vline(x=1000, line_dash="dot", line_color="#888")
    fig.update_layout(
        **{**_LAYOUT, "height": max(300, 40 * len(board) + 120)},
        title=title,
        xaxis_title="rating (1000 = average)",
        showlegend=False,
    )
    return fig


def agreement_chart(table: Any) -> Any:
    """One line per model version: agreement (0-1) of each time window, Wilson 95% bars, from
    :func:`annotation.agreement.agreement_by_version` (``time`` in Unix seconds)."""
    import pandas as pd
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (version, rows) in enumerate(table.groupby("version", sort=False)):
        when = pd.to_datetime(rows["time"], unit="s", utc=True)
        rate = rows["rate"].astype(float)
        fig.add_trace(
            go.Scatter(
                x=when,
                y=rate,
                mode="lines+markers",
                name=str(version),
                line={"color": PALETTE[i % len(PALETTE)]},
                error_y=_ci_bars(rate, rows),
                customdata=rows["n"],
                hovertemplate="%{y:.0%} of %{customdata} votes<extra>" + str(version) + "</extra>",
            )
        )
    fig.add_hline(y=0.5, line_dash="dot", line_color="#888")
    fig.update_layout(
        **{**_LAYOUT, "legend": {"orientation": "h", "y": -0.3}},  # below the axis title
        title="APEX-listener agreement per model version",
        xaxis_title="time of the votes (UTC)",
        yaxis={"title": "agreement (95% Wilson CI)", "range": [0, 1], "tickformat": ".0%"},
        showlegend=True,
    )
    return fig

"""Leaderboard tab: draws :func:`annotation.board.board_data`'s JSON (the ``/leaderboard``
endpoint, read from :class:`webui.board_views.BoardViews`): ratings with 95% CIs, APEX's agreement.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import pandas as pd

from webui import charts
from webui.services import Services

BOARDS: dict[str, str] = {
    "all": "All battles",
    "instrumental": "Instrumental prompts",
    "vocal": "Vocal prompts (with lyrics)",
}


def effects_markdown(data: dict[str, Any]) -> str:
    """What the style-controlled fit says about loudness, length and vocals ("" if plain)."""
    if not data.get("style_control"):
        return ""
    lines = [
        "**Style control:** ratings are at equal clip length, loudness, vocals and clip order "
        "(95% sandwich intervals, closed form). Fitted effects "
        "(Elo points per standard deviation of the A-B difference, 95% CI):"
    ]
    for e in data.get("effects") or []:
        effect = f"{e['per_sd']:+.0f} ({e['ci_low']:+.0f} to {e['ci_high']:+.0f})"
        if e["covariate"] == "position":
            lines.append(
                f"- **clip order**: {effect} points for clip A; between equally strong systems "
                f"clip B (played second) wins {1 - e['win_rate_per_sd']:.0%} of the time"
            )
        else:
            lean = "more often" if e["per_sd"] > 0 else "less often"
            lines.append(
                f"- **{e['covariate']}**: {effect} · {e['per_unit']:+.1f} points per {e['unit']} "
                f"· the clip one SD higher wins {lean} ({e['win_rate_per_sd']:.0%} at equal "
                "strength)"
            )
    if not data.get("effects"):
        lines.append("- none could be estimated yet (too few votes with these measurements).")
    if data.get("style_missing_votes"):
        lines.append(
            f"{data['style_missing_votes']} votes without a duration or loudness measurement "
            "(older or imported votes) are left out of this fit."
        )
    return "\n".join(lines)


def agreement_markdown(data: dict[str, Any]) -> str:
    """APEX agreement and the freshness line."""
    agree = data.get("agreement")
    lines = [f"**{data['rated_votes']}** rated votes on this board · updated {data['updated_at']}"]
    if data.get("flagged_left_out"):
        lines.append(
            f"{data['flagged_left_out']} votes with vote-quality flags are left out (tick "
            "'Include flagged votes' to count them; the Data tab says why they were flagged)."
        )
    if agree and agree["n"]:
        lines.append(
            f"**APEX agrees with listeners on {agree['rate']:.0%}** of {agree['n']} decided votes "
            f"(95% CI {agree['ci_low']:.0%}-{agree['ci_high']:.0%}; ties and 'both bad' left out)."
        )
    else:
        lines.append("APEX agreement: no decided votes with an APEX prediction yet.")
    return "\n\n".join(lines + _settled_lines(data))


def _settled_lines(data: dict[str, Any]) -> list[str]:
    """How settled the top is, clip order, and what the APEX-informed fit did."""
    lines = []
    flips = data.get("top_flips")
    if len(data["rows"]) > 1:
        top = data["rows"][0]["system"]
        if flips is not None:
            lines.append(
                f"**Top spot:** {flips} flipped vote{'s' if flips != 1 else ''} would put "
                f"another system above {top} (the fewest; smaller means less settled)."
            )
        elif data.get("apex_informed"):
            lines.append(
                f"**Top spot:** no number of flipped votes would put another system above {top}:"
                " APEX's prior outweighs these votes."
            )
    position = data.get("b_win_share")
    if position:
        lines.append(
            f"**Clip order:** clip B (played second) won {position['share']:.0%} of "
            f"{position['n']} decisive votes (50% if order does not matter; style control "
            "estimates it at equal strength)."
        )
    if data.get("apex_informed"):
        apex = data.get("apex")
        if apex:
            lines.append(
                "**APEX-informed:** ratings combine the votes with APEX's predicted strength of "
                f"each system as a prior. APEX weight {apex['weight']:.2f} (0: ignored, 1: taken "
                f"at face value), worth about {apex['prior_votes']:.0f} votes per system; it "
                "falls towards 0 when listeners disagree with APEX. Intervals are 95% posterior "
                "intervals."
            )
        else:
            lines.append("**APEX-informed:** no APEX predictions on these votes; votes only.")
    if any(r.get("provisional") for r in data["rows"]):
        lines.append(
            "Ratings marked ~ are provisional: they rest on fewer than 30 votes (the count is "
            "beside them), their interval is wide and the rank may still move."
        )
    return lines


def board_frame(data: dict[str, Any]) -> pd.DataFrame:
    """The table the page shows: rank, system, rating, 95% CI, votes."""
    columns = ["rank", "system", "rating", "95% CI", "votes"]
    rows = [
        {
            "rank": r["rank"],
            "system": r["system"],
            "rating": (
                f"~{r['rating']:.0f} ({r['votes']} votes)"
                if r.get("provisional")
                else f"{r['rating']:.0f}"
            ),
            "95% CI": "" if math.isnan(r["ci_low"]) else f"{r['ci_low']:.0f} to {r['ci_high']:.0f}",
            "votes": r["votes"],
        }
        for r in data["rows"]
    ]
    return pd.DataFrame(rows, columns=columns)


def render(data: dict[str, Any]) -> tuple[Any, Any, str, Any]:
    """Table, CI chart, the agreement (and style-control) text and the agreement-per-version
    chart for one board."""
    from annotation.agreement import COLUMNS

    frame = pd.DataFrame(data["rows"], columns=["system", "rating", "ci_low", "ci_high"])
    title = f"{BOARDS[data['board']]}: rating with 95% CI"
    if data.get("apex_informed"):
        title += " (APEX-informed)"
    elif data.get("style_control"):
        title += " (style-controlled)"
    text = "\n\n".join(t for t in (agreement_markdown(data), effects_markdown(data)) if t)
    versions = pd.DataFrame(data.get("agreement_by_version", []), columns=list(COLUMNS))
    return (
        board_frame(data),
        charts.ratings_chart(frame, title=title),
        text,
        charts.agreement_chart(versions),
    )


def build(services: Services, tab: gr.Tab, *, concurrency: int = 4) -> None:
    """Lay out the Leaderboard tab; it loads when selected, on Refresh and on a board change."""
    gr.Markdown(
        "Bradley-Terry ratings of the generating systems from every vote (a tie counts half a win "
        "each way; 'both bad' votes are kept in the data but not rated). 1000 is the average "
        "system; intervals are 95% posterior intervals. Votes with vote-quality flags are left "
        "out unless you include them; 'Control for duration, loudness and clip order' rates the "
        "systems at equal clip length, loudness, vocals and A/B position; 'APEX-informed' starts "
        "each system from APEX's predicted strength (a prior weighted by how well APEX has agreed "
        "with listeners), so young boards settle sooner."
    )
    with gr.Row():
        board = gr.Radio(
            [(label, key) for key, label in BOARDS.items()], value="all", label="Board", scale=3
        )
        imported = gr.Checkbox(
            value=False, label="Include imported votes (e.g. Music Arena's release)", scale=2
        )
        refresh = gr.Button("Refresh", scale=1)
    with gr.Row():
        flagged = gr.Checkbox(value=False, label="Include flagged votes")
        signed = gr.Checkbox(value=False, label="Signed-in votes only")
        style = gr.Checkbox(value=False, label="Control for duration, loudness and clip order")
        informed = gr.Checkbox(value=False, label="APEX-informed", elem_id="apex-informed")
    info = gr.Markdown()
    with gr.Row():
        table = gr.Dataframe(interactive=False, scale=2, label="Ratings")
        chart = gr.Plot(scale=3, label="Ratings with 95% CI")
    gr.Markdown(
        "**Does the model learn?** How often APEX picked the clip listeners chose, per model "
        "version that made the prediction (each vote records it), in windows of consecutive "
        "votes, with 95% Wilson intervals. A refit that helps shows a higher line."
    )
    versions = gr.Plot(label="APEX-listener agreement per model version", elem_id="agreement-chart")
    data = gr.JSON(visible=False)
    from webui.board_views import BoardViews

    views = BoardViews(services)
    views.prewarm()

    # Named as board_data's options: the /leaderboard API's parameters (defaults: the boxes').
    def _load(
        which: str,
        include_imported: bool,
        include_flagged: bool,
        signed_in_only: bool,
        style_control: bool,
        apex_informed: bool,
    ) -> dict[str, Any]:
        return views.get(
            which, include_imported, include_flagged, signed_in_only, style_control, apex_informed
        )

    options = [board, imported, flagged, signed, style, informed]
    fetch = {"fn": _load, "inputs": options, "outputs": [data]}
    draw = {"fn": render, "inputs": [data], "outputs": [table, chart, info, versions]}
    limits = {"concurrency_limit": concurrency, "concurrency_id": "read"}
    refresh.click(**fetch, **limits, api_name="leaderboard").success(
        **draw, api_visibility="private"
    )
    for trigger in (*(o.change for o in options), tab.select):
        trigger(**fetch, **limits, api_visibility="private").success(
            **draw, api_visibility="private"
        )

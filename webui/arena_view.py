"""What the Arena tab shows and keeps per page: vote buttons, listening progress, the reveal.

Pure functions of plain values (no gradio, no services), so the text is tested without a page.
The listening bookkeeping here is the page's own clock of how long each player has played; what
counts for the vote is the server's credit (:mod:`webui.arena`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apex.tasks import AESTHETICS, ENGAGEMENT, PREFERENCES, SIDES
from webui import charts

#: Button label -> preference value, in the order of :data:`apex.tasks.PREFERENCES`.
VOTE_BUTTONS: dict[str, str] = dict(
    zip(("A is better", "B is better", "Tie", "Both bad"), PREFERENCES, strict=True)
)
#: Preference value -> the words the reveal uses for it.
PREFERENCE_WORDS: dict[str, str] = dict(
    zip(PREFERENCES, ("A is better", "B is better", "a tie", "both bad"), strict=True)
)

CONSENT = (
    "**Before you vote:** your vote, how long you listened, and any feedback or ratings you give "
    "are stored and published in an open dataset for research. We never store your IP address or "
    "account: votes carry only a salted pseudonym. Clips are AI-generated; the systems are hidden "
    "until you vote."
)


def progress_markdown(credit: Mapping[str, float], need: float) -> str:
    """'Listened: A 5 / 5 s (done) · B 1 / 5 s' — what still blocks the vote.

    Args:
        credit: side -> seconds the server credits.
        need: the minimum listen per side, seconds; whether it is met is the rules' answer
            (:func:`annotation.rules.listen_status`).
    """
    from annotation.rules import listen_status

    status = listen_status(credit, need)
    parts = []
    for side in SIDES:
        got = min(credit.get(side, 0.0), need) if need > 0 else credit.get(side, 0.0)
        mark = "" if status.missing.get(side, 0.0) > 0 else " (done)"
        parts.append(f"{side} {got:.0f} / {need:g} s{mark}")
    tail = (
        "voting is open." if status.can_vote else f"voting opens when both clips reach {need:g} s."
    )
    return f"**Listened:** {' · '.join(parts)} — {tail}"


def reveal_markdown(reveal: dict[str, Any]) -> str:
    """The reveal: systems, APEX scores side by side, APEX's pick and agreement."""
    pref = reveal["preference"]
    rows = [
        "| | A | B |",
        "|---|---|---|",
        f"| **System** | **{reveal['system_a']}** | **{reveal['system_b']}** |",
    ]
    for name in ENGAGEMENT + AESTHETICS:
        a, b = reveal["apex_a"].get(name), reveal["apex_b"].get(name)
        if a is None or b is None:
            continue
        digits = 0 if name in ENGAGEMENT else 2
        rows.append(f"| APEX {charts.pretty(name)} | {a:.{digits}f} | {b:.{digits}f} |")
    pick, prob = reveal.get("apex_pick"), reveal.get("apex_probability")
    if pick is None:
        verdict = reveal.get("apex_note") or "APEX made no prediction for this battle."
    else:
        agrees = reveal.get("apex_agrees")
        judged = (
            "**APEX agreed with you.**"
            if agrees
            else "**APEX disagreed with you.**"
            if agrees is False
            else "(ties and 'both bad' are not counted as agreement)"
        )
        verdict = f"APEX preferred **{pick}** ({prob:.0%} confident). {judged}"
        if reveal.get("model_version"):
            verdict += f" Predicted by model `{reveal['model_version']}`."
    return "\n".join([f"### You voted: {PREFERENCE_WORDS.get(pref, pref)}", "", *rows, "", verdict])


def collect_ratings(values: list[Any]) -> dict[str, dict[str, int]] | None:
    """Radio values (A's five aesthetics, then B's) -> ``{"A": {dim: 1-5}, ...}`` or None."""
    out: dict[str, dict[str, int]] = {}
    for i, value in enumerate(values):
        if value in (None, ""):
            continue
        side, dim = SIDES[i // len(AESTHETICS)], AESTHETICS[i % len(AESTHETICS)]
        out.setdefault(side, {})[dim] = int(value)
    return out or None


def fresh_listen_state(battle_id: str | None = None) -> dict[str, Any]:
    """Per-session listening bookkeeping: totals played and when each player started."""
    return {"battle_id": battle_id, "total": dict.fromkeys(SIDES, 0.0), "since": {}}


def advance(state: dict[str, Any], now: float) -> list[str]:
    """Add the time since the last update to every playing side; return the sides that moved."""
    moved = []
    for side, start in list(state["since"].items()):
        state["total"][side] += max(0.0, now - start)
        state["since"][side] = now
        moved.append(side)
    return moved

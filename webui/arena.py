"""Arena tab: two anonymous clips, listen, vote, see who made them and what APEX thought.

The server decides everything (:class:`annotation.arena.Arena`): this module only measures how long
each player has been playing on *this server's* clock (play/pause events and ``gr.Timer`` ticks),
reports the running total to ``Arena.listen``, and unlocks the vote buttons when the server's
credited listening reaches the minimum. A vote the server refuses shows its reason.

Endpoints for ``gradio_client``: ``/new_battle`` -> (battle dict, audio A, audio B),
``/listen(battle_id, side, seconds)``, ``/vote(battle_id, preference, feedback, ratings)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_DESCRIPTIONS
from webui import charts
from webui.services import NotReady, Services

SIDES = ("A", "B")
#: Button label -> preference value (annotation.rules.PREFERENCES).
VOTE_BUTTONS: dict[str, str] = {
    "A is better": "A",
    "B is better": "B",
    "Tie": "TIE",
    "Both bad": "BOTH_BAD",
}
PREFERENCE_WORDS = {"A": "A is better", "B": "B is better", "TIE": "a tie", "BOTH_BAD": "both bad"}
TICK_S = 1.0

CONSENT = (
    "**Before you vote:** your vote, how long you listened, and any feedback or ratings you give "
    "are stored and published in an open dataset for research. We never store your IP address or "
    "account: votes carry only a salted pseudonym. Clips are AI-generated; the systems are hidden "
    "until you vote."
)


def session_id(request: gr.Request | None) -> str:
    """The browser session (one per page load) or ``gradio_client`` instance."""
    return (request.session_hash if request is not None else None) or "anonymous"


def client_ip(request: gr.Request | None) -> str | None:
    """The visitor's address (first X-Forwarded-For hop behind the Space proxy); only hashed."""
    if request is None:
        return None
    forwarded = (request.headers or {}).get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else None


def _arena(services: Services) -> Any:
    try:
        return services.arena
    except NotReady as err:
        raise gr.Error(str(err), title="Please wait", print_exception=False) from None


def _refused(err: Exception) -> gr.Error:
    return gr.Error(str(err), title="Not accepted", print_exception=False)


def served_folder(settings: Any) -> Path:
    """Where the anonymised links to arena clips live (gradio serves it as static files)."""
    return Path(settings.cache_dir) / "arena-audio"


def served_copy(path: str | Path, folder: Path) -> str:
    """A link to the clip under a name that gives nothing away; made once per clip.

    A pool's file names can give the system away (``suno_0001.mp3``) and gradio serves files under
    their own name, so each clip is served through a hard link (a copy across file systems) named
    by a hash of its path. Cheaper than re-encoding the audio on every battle.
    """
    path = Path(path)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    target = folder / f"clip-{digest}{path.suffix.lower()}"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.link(path, partial)
        except OSError:
            shutil.copyfile(path, partial)
        os.replace(partial, target)  # atomic: concurrent battles never see half a file
    return str(target)


def new_battle(services: Services, request: gr.Request | None) -> tuple[dict[str, Any], Any, Any]:
    """Issue a battle to this session: (``{"battle_id", "prompt", "min_listen_s"}``, A, B)."""
    from annotation.rules import VoteRefused

    arena = _arena(services)
    try:
        ticket = arena.new_battle(session_id(request), client_ip(request))
    except VoteRefused as err:
        raise _refused(err) from None
    battle = arena.store.get_battle(ticket.battle_id)
    info = {
        "battle_id": ticket.battle_id,
        "prompt": battle.prompt if battle is not None else "",
        "min_listen_s": float(services.settings.min_listen_s),
    }
    folder = served_folder(services.settings)
    return info, served_copy(ticket.audio_a, folder), served_copy(ticket.audio_b, folder)


def report_listen(
    services: Services, battle_id: str, side: str, seconds: float, request: gr.Request | None
) -> dict[str, Any]:
    """Report ``seconds`` played of clip ``side`` in total; return the server's credit.

    Returns:
        ``{"credit": {"A": s, "B": s}, "min_listen_s": s, "can_vote": bool}``.
    """
    from annotation.rules import VoteRefused

    arena = _arena(services)
    try:
        credit = arena.listen(battle_id, side, float(seconds), session_id(request))
    except VoteRefused as err:
        raise _refused(err) from None
    need = float(services.settings.min_listen_s)
    return {
        "credit": {s: round(float(credit.get(s, 0.0)), 3) for s in SIDES},
        "min_listen_s": need,
        "can_vote": all(credit.get(s, 0.0) >= need - 1e-9 for s in SIDES),
    }


def cast_vote(
    services: Services,
    battle_id: str,
    preference: str,
    feedback: str | None,
    ratings: dict[str, dict[str, int]] | None,
    request: gr.Request | None,
) -> dict[str, Any]:
    """Vote; return the reveal (systems, APEX's scores and pick, agreement, your vote count)."""
    from annotation.rules import VoteRefused

    arena = _arena(services)
    try:
        reveal = arena.vote(
            battle_id,
            preference,
            session_id(request),
            client_ip(request),
            feedback=feedback or None,
            ratings=ratings or None,
        )
    except VoteRefused as err:
        raise _refused(err) from None
    return dataclasses.asdict(reveal)


# ---------------------------------------------------------------------- presentation
def progress_markdown(credit: dict[str, float], need: float) -> str:
    """'Listened: A 5 / 5 s (done) · B 1 / 5 s' — what still blocks the vote."""
    parts = []
    for side in SIDES:
        got = min(credit.get(side, 0.0), need) if need > 0 else credit.get(side, 0.0)
        mark = " (done)" if credit.get(side, 0.0) >= need - 1e-9 else ""
        parts.append(f"{side} {got:.0f} / {need:g} s{mark}")
    ready = all(credit.get(side, 0.0) >= need - 1e-9 for side in SIDES)
    tail = "voting is open." if ready else f"voting opens when both clips reach {need:g} s."
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
        verdict = "APEX made no prediction for this battle."
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


@dataclass
class _Widgets:
    """The Arena tab's components (one place, so event wiring stays readable)."""

    info: Any
    state: Any
    audio: dict[str, Any]
    progress: Any
    buttons: list[Any]
    reveal: Any
    feedback: Any
    radios: list[Any]
    timer: Any
    votes: Any
    count: Any
    next_btn: Any


def build(services: Services, tab: gr.Tab, *, concurrency: int = 32) -> None:
    """Lay out the Arena tab and wire it (see :mod:`webui.arena_events`)."""
    from webui.arena_events import wire

    gr.Markdown(CONSENT, elem_id="consent")
    info = gr.JSON(visible=False)
    prompt = gr.Markdown(elem_id="arena-prompt")
    with gr.Row():
        audio = {
            s: gr.Audio(
                label=f"Player {s}",
                type="filepath",
                interactive=False,
                elem_id=f"player-{s.lower()}",
                buttons=[],
            )
            for s in SIDES
        }
    progress = gr.Markdown("Press play on both clips.", elem_id="listen-progress")
    with gr.Row(elem_classes="vote-row"):
        buttons = [
            gr.Button(label, interactive=False, elem_id=f"vote-{pref.lower()}")
            for label, pref in VOTE_BUTTONS.items()
        ]
    with gr.Accordion("Optional: feedback and 1-5 ratings of each clip", open=False):
        feedback = gr.Textbox(
            label="Feedback (optional)",
            max_length=services.settings.feedback_max_chars,
            lines=2,
        )
        radios = []
        with gr.Row():
            for side in SIDES:
                with gr.Column():
                    gr.Markdown(f"**Clip {side}**")
                    radios += [
                        gr.Radio(
                            ["1", "2", "3", "4", "5"],
                            label=charts.pretty(dim),
                            info=SCORE_DESCRIPTIONS[dim],
                        )
                        for dim in AESTHETICS
                    ]
    reveal = gr.Markdown(visible=False, elem_id="reveal")
    with gr.Row():
        next_btn = gr.Button("Next battle", variant="primary", elem_id="next-battle")
        votes = gr.Markdown("Your votes this session: 0", elem_id="session-votes")
    w = _Widgets(
        info=info,
        state=gr.State(fresh_listen_state()),
        audio=audio,
        progress=progress,
        buttons=buttons,
        reveal=reveal,
        feedback=feedback,
        radios=radios,
        timer=gr.Timer(TICK_S, active=False),
        votes=votes,
        count=gr.State(0),  # votes from this page load (the server counts per voter, not page)
        next_btn=next_btn,
    )
    wire(services, tab, w, prompt, concurrency=concurrency)


def now() -> float:
    """Server clock for listening (monotonic: immune to wall-clock jumps)."""
    return time.monotonic()

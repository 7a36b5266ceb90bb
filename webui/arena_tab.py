"""The Arena tab: its components and their events (new battle, play/pause/tick listening
reports, votes) and the ``/listen`` and ``/vote`` API endpoints.

Every event here is a thin adapter from component values to the handlers in :mod:`webui.arena`
(which call the server's :class:`annotation.arena.Arena`) and the text of
:mod:`webui.arena_view`. Imports go one way: this module -> ``arena`` and ``arena_view``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from apex.tasks import AESTHETICS, SCORE_DESCRIPTIONS, SIDES
from webui import arena as ui
from webui import arena_view as view
from webui import charts
from webui.services import Services

#: How often a playing clip's listening is reported, seconds.
TICK_S = 1.0


@dataclass
class Widgets:
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
    reveal_timer: Any = None  # polls a reveal given before APEX had scored its clips


def build(services: Services, tab: gr.Tab, *, concurrency: int = 32) -> None:
    """Lay out the Arena tab and wire its events (see :func:`wire`)."""
    gr.Markdown(view.CONSENT, elem_id="consent")
    if ui.signin_enabled(services.settings):
        with gr.Row():
            gr.LoginButton(elem_id="hf-login", scale=0)
            gr.Markdown(
                "Optional: sign in with Hugging Face so your votes count as one account's (the "
                "dataset stores only a salted hash of the account id). Voting works without it."
            )
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
            for label, pref in view.VOTE_BUTTONS.items()
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
    w = Widgets(
        info=info,
        state=gr.State(view.fresh_listen_state()),
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
        reveal_timer=gr.Timer(2.0, active=False),
    )
    wire(services, tab, w, prompt, concurrency=concurrency)


def _buttons(can_vote: bool) -> list[Any]:
    return [gr.Button(interactive=can_vote) for _ in view.VOTE_BUTTONS]


def _reset(info: dict[str, Any] | None) -> list[Any]:
    """Outputs for a fresh battle: prompt, state, progress, buttons, reveal, inputs, timer."""
    from annotation.rules import listen_status

    battle_id = (info or {}).get("battle_id")
    need = float((info or {}).get("min_listen_s", 0.0))
    prompt = (info or {}).get("prompt") or ""
    source = (info or {}).get("pool") or ""
    lines = [f"**Prompt:** {prompt}" if prompt else "", f"*Clips: {source}*" if source else ""]
    return [
        "\n\n".join(line for line in lines if line),
        view.fresh_listen_state(battle_id),
        view.progress_markdown({}, need) if battle_id else "",
        *_buttons(bool(battle_id) and listen_status({}, need).can_vote),
        gr.Markdown(value="", visible=False),
        "",
        *[None for _ in range(2 * len(AESTHETICS))],
        gr.Timer(active=False),
    ]


def _report(
    services: Services, info: dict[str, Any] | None, state: dict[str, Any], sides: list[str], req
) -> tuple[str, bool]:
    """Send the running totals of ``sides`` to the server; (progress text, can vote)."""
    battle_id = (info or {}).get("battle_id")
    if not battle_id or state.get("battle_id") != battle_id:
        return "", False
    result = None
    try:
        for side in sides:
            result = ui.report_listen(services, battle_id, side, state["total"][side], req)
    except gr.Error as err:  # e.g. expired battle: say so in place instead of a popup per tick
        return f"**Note:** {err.message}", False
    if result is None:
        return gr.skip(), False
    return view.progress_markdown(result["credit"], result["min_listen_s"]), result["can_vote"]


def wire(services: Services, tab: gr.Tab, w: Widgets, prompt: Any, *, concurrency: int) -> None:
    """Connect the Arena tab's events and register its API endpoints."""
    arena_limits = {"concurrency_limit": concurrency, "concurrency_id": "arena"}
    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    reset_outputs = [
        prompt,
        w.state,
        w.progress,
        *w.buttons,
        w.reveal,
        w.feedback,
        *w.radios,
        w.timer,
    ]

    def _new(
        request: gr.Request, progress: gr.Progress = gr.Progress()
    ) -> tuple[dict[str, Any], Any, Any]:
        return ui.new_battle(services, request, progress)

    w.next_btn.click(
        _new, None, [w.info, w.audio["A"], w.audio["B"]], api_name="new_battle", **arena_limits
    ).success(_reset, [w.info], reset_outputs, **quiet)

    def _first(info: dict[str, Any] | None, request: gr.Request) -> list[Any]:
        skip = [gr.skip()] * (3 + len(reset_outputs))
        if info and info.get("battle_id"):
            return skip
        try:
            fresh = ui.new_battle(services, request)
        except gr.Error as err:  # warming up (or no pair left): say it in place of the players
            skip[3 + reset_outputs.index(w.progress)] = f"**{err.title}:** {err.message}"
            return skip
        return [*fresh, *_reset(fresh[0])]

    tab.select(_first, [w.info], [w.info, w.audio["A"], w.audio["B"], *reset_outputs], **quiet)

    listen_outputs = [w.state, w.progress, *w.buttons]
    for side in SIDES:

        def _play(state: dict[str, Any], side: str = side) -> tuple[dict[str, Any], Any]:
            state["since"].setdefault(side, ui.now())
            return state, gr.Timer(active=True)

        def _pause(
            info: dict[str, Any] | None,
            state: dict[str, Any],
            request: gr.Request,
            side: str = side,
        ) -> list[Any]:
            view.advance(state, ui.now())
            state["since"].pop(side, None)
            text, can_vote = _report(services, info, state, [side], request)
            return [state, text, *_buttons(can_vote), gr.Timer(active=bool(state["since"]))]

        w.audio[side].play(_play, [w.state], [w.state, w.timer], **quiet)
        for event in (w.audio[side].pause, w.audio[side].stop):
            event(_pause, [w.info, w.state], [*listen_outputs, w.timer], **quiet, **arena_limits)

    def _tick(info: dict[str, Any] | None, state: dict[str, Any], request: gr.Request) -> list:
        moved = view.advance(state, ui.now())
        if not moved:
            return [state, gr.skip(), *[gr.skip() for _ in w.buttons]]
        text, can_vote = _report(services, info, state, moved, request)
        return [state, text, *_buttons(can_vote)]

    w.timer.tick(_tick, [w.info, w.state], listen_outputs, **quiet, **arena_limits)
    _wire_votes(services, w, arena_limits, quiet)
    _register_api(services, arena_limits)


def _wire_votes(services: Services, w: Widgets, limits: dict, quiet: dict) -> None:
    # A set of inputs makes gradio pass one {component: value} dict: ten rating radios stay
    # readable without ten positional parameters.
    inputs = {w.info, w.state, w.count, w.feedback, *w.radios}
    for button, pref in zip(w.buttons, view.VOTE_BUTTONS.values(), strict=True):

        def _vote(
            values: dict,
            request: gr.Request,
            profile: gr.OAuthProfile | None,
            pref: str = pref,
        ) -> list[Any]:
            info, state = values[w.info], values[w.state]
            if not info or not info.get("battle_id"):
                raise gr.Error(
                    "Start a battle first.", title="No battle yet", print_exception=False
                )
            ratings = view.collect_ratings([values[r] for r in w.radios])
            reveal = ui.cast_vote(
                services, info["battle_id"], pref, values[w.feedback], ratings, request, profile
            )
            state["since"] = {}
            state["reveal"] = reveal if reveal.get("apex_pending") else None
            count = int(values[w.count] or 0) + 1
            return [
                gr.Markdown(value=view.reveal_markdown(reveal), visible=True),
                *_buttons(False),
                gr.Timer(active=False),
                f"Your votes this session: **{count}**",
                state,
                count,
                gr.Timer(active=bool(state["reveal"])),
            ]

        button.click(
            _vote,
            inputs,
            [w.reveal, *w.buttons, w.timer, w.votes, w.state, w.count, w.reveal_timer],
            **{**quiet, "show_progress": "minimal"},
            **limits,
        )

    def _refresh(state: dict[str, Any]) -> list[Any]:
        """Fill in APEX's view once the clips of a pending reveal are scored."""
        reveal = state.get("reveal")
        if not reveal:
            return [gr.skip(), state, gr.Timer(active=False)]
        fresh = ui.refresh_reveal(services, reveal)
        if fresh["apex_pending"]:
            return [gr.skip(), state, gr.Timer(active=True)]
        state["reveal"] = None
        shown = gr.Markdown(value=view.reveal_markdown(fresh), visible=True)
        return [shown, state, gr.Timer(active=False)]

    w.reveal_timer.tick(_refresh, [w.state], [w.reveal, w.state, w.reveal_timer], **quiet)


def _register_api(services: Services, limits: dict) -> None:
    """``/listen`` and ``/vote`` for gradio_client users (plain JSON in and out)."""

    def listen(battle_id: str, side: str, seconds: float, request: gr.Request) -> dict:
        """Report that `seconds` of clip `side` ("A"/"B") have been played in total so far.

        Returns {"credit": {"A": s, "B": s}, "min_listen_s": s, "can_vote": bool}.
        """
        return ui.report_listen(services, battle_id, side, seconds, request)

    def vote(
        battle_id: str,
        preference: str,
        feedback: str = "",
        ratings: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> dict:
        """Vote "A", "B", "TIE" or "BOTH_BAD" on your battle; returns the reveal.

        `ratings` (optional): {"A": {"coherence": 1-5, ...}, "B": {...}} on the five aesthetics.
        Signed in with Hugging Face (the session cookie), the vote counts as your account's.
        """
        return ui.cast_vote(services, battle_id, preference, feedback, ratings, request, profile)

    gr.api(listen, api_name="listen", **limits)
    gr.api(vote, api_name="vote", **limits)

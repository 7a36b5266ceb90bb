"""The Arena tab and its ``/new_battle``, ``/listen`` and ``/vote`` endpoints: the server decides
(:mod:`annotation.rules`), the page clocks each player. Text, page state: :mod:`webui.arena_view`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from apex.tasks import AESTHETICS, SCORE_DESCRIPTIONS, SIDES
from webui import arena_view as view
from webui import charts
from webui.services import NotReady, Services

#: How often a playing clip's listening is reported, seconds.
TICK_S = 1.0


def signin_enabled(settings: Any) -> bool:
    """Whether the Arena offers 'Sign in with Hugging Face' (``APEX_SIGNIN``); ``auto``: only on a
    Space with ``hf_oauth: true``, which sets ``OAUTH_CLIENT_ID`` (docs/DESIGN.md says why)."""
    from gradio.utils import get_space

    if settings.signin in ("on", "off"):
        return settings.signin == "on"
    return get_space() is not None and bool(os.environ.get("OAUTH_CLIENT_ID"))


@contextlib.contextmanager
def _titled() -> Iterator[None]:
    """Raise a service still warming up, or the arena's refusal, as a titled ``gr.Error``."""
    from annotation.rules import VoteRefused

    try:
        yield
    except NotReady as err:
        raise gr.Error(str(err), title="Please wait", print_exception=False) from None
    except VoteRefused as err:
        title = "Please slow down" if err.code == "rate_limited" else "Not accepted"
        raise gr.Error(str(err), title=title, print_exception=False) from None


def _visitor(services: Services, request: gr.Request | None) -> tuple[str, str | None]:
    """(session id, client address) of a request."""
    return view.session_id(request), view.client_ip(request, services.settings.trusted_proxies)


def new_battle(
    services: Services, request: gr.Request | None, progress: Any = None
) -> tuple[dict[str, Any], str, str]:
    """Issue a battle: (``{"battle_id", "prompt", "min_listen_s", "pool"}``, clip A, clip B);
    waits up to ``APEX_WARMUP_WAIT_S`` for the arena, telling ``progress`` (``gr.Progress``)."""
    settings = services.settings
    with _titled():
        arena = services.wait_for("arena", progress=progress)
        ticket = arena.new_battle(*_visitor(services, request))
    info = {
        "battle_id": ticket.battle_id,
        "prompt": ticket.prompt,
        "min_listen_s": float(settings.min_listen_s),
        "pool": getattr(arena.pool, "description", ""),
    }
    folder, keep_s = view.served_folder(settings), settings.battle_ttl_s
    a, b = (view.served_copy(p, folder, keep_s=keep_s) for p in (ticket.audio_a, ticket.audio_b))
    return info, a, b


def report_listen(
    services: Services, battle_id: Any, side: Any, seconds: Any, request: gr.Request | None
) -> dict[str, Any]:
    """Report ``seconds`` played of clip ``side`` in total (sent to the rules unconverted, which
    refuse "5" or true); return ``{"credit": {"A": s, "B": s}, "min_listen_s": s, "can_vote"}``."""
    from annotation.rules import listen_status

    with _titled():
        credit = services.arena.listen(battle_id, side, seconds, *_visitor(services, request))
    need = float(services.settings.min_listen_s)
    return {
        "credit": {s: round(float(credit.get(s, 0.0)), 3) for s in SIDES},
        "min_listen_s": need,
        "can_vote": listen_status(credit, need).can_vote,
    }


def cast_vote(
    services: Services,
    battle_id: Any,
    preference: Any,
    feedback: Any,
    ratings: Any,
    request: gr.Request | None,
    profile: Any = None,
) -> dict[str, Any]:
    """Vote; return the reveal (systems, APEX's scores and pick, agreement, your vote count).
    ``profile``: a signed-in visitor's ``gr.OAuthProfile`` (the vote is keyed by the account)."""
    with _titled():
        reveal = services.arena.vote(
            battle_id,
            preference,
            *_visitor(services, request),
            feedback=None if feedback in (None, "") else feedback,  # the rules check the types
            ratings=None if ratings in (None, "", {}) else ratings,
            account=view.account_id(profile),
        )
    return dataclasses.asdict(reveal)


def refresh_reveal(services: Services, reveal: Any, request: gr.Request | None) -> dict[str, Any]:
    """A reveal given while APEX was still scoring, with APEX's view if ready now. ``reveal``
    comes from the client: raises :class:`annotation.rules.VoteRefused` unless it has exactly a
    reveal's keys and its battle is voted and ``request``'s session's."""
    from annotation.arena import Reveal
    from annotation.rules import VoteRefused

    fields = {field.name for field in dataclasses.fields(Reveal)}
    if not isinstance(reveal, dict) or reveal.keys() != fields:
        raise VoteRefused("unknown_battle", "this is not a reveal this server gave.")
    late = services.arena.late_reveal(Reveal(**reveal), view.session_id(request))
    return dataclasses.asdict(late)


class Widgets:
    """The Arena tab's components, laid out in the current ``gr.Blocks`` when made."""

    def __init__(self, settings: Any) -> None:
        gr.Markdown(view.CONSENT, elem_id="consent")
        if signin_enabled(settings):
            with gr.Row():
                gr.LoginButton(elem_id="hf-login", scale=0)
                gr.Markdown(
                    "Optional: sign in with Hugging Face so your votes count as one account's "
                    "(the dataset stores only a salted hash of the account id). Voting works "
                    "without it."
                )
        self.info = gr.JSON(visible=False)
        self.prompt = gr.Markdown(elem_id="arena-prompt")
        with gr.Row():
            self.audio = {
                s: gr.Audio(
                    label=f"Player {s}",
                    type="filepath",
                    interactive=False,
                    elem_id=f"player-{s.lower()}",
                    buttons=[],
                )
                for s in SIDES
            }
        self.progress = gr.Markdown("Press play on both clips.", elem_id="listen-progress")
        with gr.Row(elem_classes="vote-row"):
            self.buttons = [
                gr.Button(label, interactive=False, elem_id=f"vote-{pref.lower()}")
                for label, pref in view.VOTE_BUTTONS.items()
            ]
        with gr.Accordion("Optional: feedback and 1-5 ratings of each clip", open=False):
            self.feedback = gr.Textbox(
                label="Feedback (optional)", max_length=settings.feedback_max_chars, lines=2
            )
            self.radios = []
            with gr.Row():
                for side in SIDES:
                    with gr.Column():
                        gr.Markdown(f"**Clip {side}**")
                        self.radios += [
                            gr.Radio(
                                ["1", "2", "3", "4", "5"],
                                label=charts.pretty(dim),
                                info=SCORE_DESCRIPTIONS[dim],
                            )
                            for dim in AESTHETICS
                        ]
        self.reveal = gr.Markdown(visible=False, elem_id="reveal")
        with gr.Row():
            self.next_btn = gr.Button("Next battle", variant="primary", elem_id="next-battle")
            self.votes = gr.Markdown("Your votes this session: 0", elem_id="session-votes")
        self.state = gr.State(view.fresh_listen_state())
        self.count = gr.State(0)  # votes from this page load (the server counts per voter)
        self.timer = gr.Timer(TICK_S, active=False)
        self.reveal_timer = gr.Timer(2.0, active=False)  # polls a reveal APEX had not scored
        fresh = [self.prompt, self.state, self.progress, *self.buttons, self.reveal]
        #: What :func:`_reset` fills, in its order.
        self.resets = [*fresh, self.feedback, *self.radios, self.timer]


def build(services: Services, tab: gr.Tab, *, concurrency: int = 32) -> None:
    """Lay out the Arena tab and wire its events and endpoints."""
    w = Widgets(services.settings)
    limits = {"concurrency_limit": concurrency, "concurrency_id": "arena"}
    _wire_battles(services, tab, w, limits)
    _wire_listening(services, w, limits)
    _wire_votes(services, w, limits)
    _register_api(services, limits)


#: Events the page makes for itself: not in the API, no spinner.
QUIET = {"api_visibility": "private", "show_progress": "hidden"}


def _buttons(can_vote: bool) -> list[Any]:
    return [gr.Button(interactive=can_vote) for _ in view.VOTE_BUTTONS]


def _reset(info: dict[str, Any]) -> list[Any]:
    """:attr:`Widgets.resets` for a battle :func:`new_battle` issued."""
    from annotation.rules import listen_status

    need = float(info["min_listen_s"])
    lines = [f"**Prompt:** {info['prompt']}" if info["prompt"] else ""]
    lines.append(f"*Clips: {info['pool']}*" if info["pool"] else "")
    return [
        "\n\n".join(line for line in lines if line),
        view.fresh_listen_state(info["battle_id"]),
        view.progress_markdown({}, need),
        *_buttons(listen_status({}, need).can_vote),
        gr.Markdown(value="", visible=False),
        "",
        *[None for _ in range(2 * len(AESTHETICS))],
        gr.Timer(active=False),
    ]


def _wire_battles(services: Services, tab: gr.Tab, w: Widgets, limits: dict) -> None:
    """A battle on "Next battle" (the ``/new_battle`` endpoint) and when the tab is opened."""
    issued = [w.info, w.audio["A"], w.audio["B"]]

    def _new(request: gr.Request, progress: gr.Progress = gr.Progress()) -> tuple:
        return new_battle(services, request, progress)

    w.next_btn.click(_new, None, issued, api_name="new_battle", **limits).success(
        _reset, [w.info], w.resets, **QUIET
    )

    def _first(info: dict[str, Any] | None, request: gr.Request) -> list[Any]:
        skip = [gr.skip()] * (len(issued) + len(w.resets))
        if info and info.get("battle_id"):
            return skip
        try:
            fresh = new_battle(services, request)
        except gr.Error as err:  # warming up (or no pair left): say it in place of the players
            skip[len(issued) + w.resets.index(w.progress)] = f"**{err.title}:** {err.message}"
            return skip
        return [*fresh, *_reset(fresh[0])]

    tab.select(_first, [w.info], issued + w.resets, **QUIET)


def _report(
    services: Services, info: dict[str, Any] | None, state: dict[str, Any], sides: list[str], req
) -> list[Any]:
    """Send the running totals of ``sides`` to the server: [progress text, *vote buttons]."""
    battle_id = (info or {}).get("battle_id")
    if not battle_id or state.get("battle_id") != battle_id:
        return ["", *_buttons(False)]
    try:
        for side in sides:
            result = report_listen(services, battle_id, side, state["total"][side], req)
    except gr.Error as err:  # e.g. expired battle: say so in place instead of a popup per tick
        return [f"**Note:** {err.message}", *_buttons(False)]
    text = view.progress_markdown(result["credit"], result["min_listen_s"])
    return [text, *_buttons(result["can_vote"])]


def _wire_listening(services: Services, w: Widgets, limits: dict) -> None:
    """Play starts a side's clock; pause, stop and every tick report the totals."""
    outputs = [w.state, w.progress, *w.buttons]
    for side in SIDES:

        def _play(state: dict[str, Any], side: str = side) -> tuple[dict[str, Any], Any]:
            state["since"].setdefault(side, time.monotonic())
            return state, gr.Timer(active=True)

        def _pause(info: Any, state: dict[str, Any], request: gr.Request, side: str = side) -> list:
            view.advance(state, time.monotonic())
            state["since"].pop(side, None)
            shown = _report(services, info, state, [side], request)
            return [state, *shown, gr.Timer(active=bool(state["since"]))]

        w.audio[side].play(_play, [w.state], [w.state, w.timer], **QUIET)
        for event in (w.audio[side].pause, w.audio[side].stop):
            event(_pause, [w.info, w.state], [*outputs, w.timer], **QUIET, **limits)

    def _tick(info: Any, state: dict[str, Any], request: gr.Request) -> list[Any]:
        moved = view.advance(state, time.monotonic())
        if not moved:
            return [state, *[gr.skip() for _ in outputs[1:]]]
        return [state, *_report(services, info, state, moved, request)]

    w.timer.tick(_tick, [w.info, w.state], outputs, **QUIET, **limits)


def _wire_votes(services: Services, w: Widgets, limits: dict) -> None:
    """The vote buttons, then the reveal (polled until APEX has scored a pending one)."""
    # A set of inputs makes gradio pass one {component: value} dict: ten rating radios stay
    # readable without ten positional parameters.
    inputs = {w.info, w.state, w.count, w.feedback, *w.radios}
    outputs = [w.reveal, *w.buttons, w.timer, w.votes, w.state, w.count, w.reveal_timer]
    for button, pref in zip(w.buttons, view.VOTE_BUTTONS.values(), strict=True):

        def _vote(
            values: dict, request: gr.Request, profile: gr.OAuthProfile | None, pref: str = pref
        ) -> list[Any]:
            info, state = values[w.info], values[w.state]
            if not info or not info.get("battle_id"):
                raise gr.Error(
                    "Start a battle first.", title="No battle yet", print_exception=False
                )
            ratings = view.collect_ratings([values[r] for r in w.radios])
            reveal = cast_vote(
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

        button.click(_vote, inputs, outputs, **{**QUIET, "show_progress": "minimal"}, **limits)

    def _refresh(state: dict[str, Any], request: gr.Request) -> list[Any]:
        from annotation.rules import VoteRefused

        try:
            fresh = refresh_reveal(services, state.get("reveal"), request)
        except VoteRefused:  # not a reveal of this session's voted battle: stop polling
            state["reveal"] = None
            return [gr.skip(), state, gr.Timer(active=False)]
        if fresh["apex_pending"]:
            return [gr.skip(), state, gr.Timer(active=True)]
        state["reveal"] = None
        shown = gr.Markdown(value=view.reveal_markdown(fresh), visible=True)
        return [shown, state, gr.Timer(active=False)]

    w.reveal_timer.tick(_refresh, [w.state], [w.reveal, w.state, w.reveal_timer], **QUIET)


def _register_api(services: Services, limits: dict) -> None:
    """``/listen`` and ``/vote`` for ``gradio_client`` users (plain JSON in and out)."""

    def listen(battle_id: str, side: str, seconds: float, request: gr.Request) -> dict:
        """Report that `seconds` of clip `side` ("A"/"B") have been played in total so far.
        Returns {"credit": {"A": s, "B": s}, "min_listen_s": s, "can_vote": bool}."""
        return report_listen(services, battle_id, side, seconds, request)

    def vote(
        battle_id: str,
        preference: str,
        feedback: str = "",
        ratings: dict | None = None,
        request: gr.Request = None,
        profile: gr.OAuthProfile | None = None,
    ) -> dict:
        """Vote "A", "B", "TIE" or "BOTH_BAD" on your battle; returns the reveal. `ratings`
        (optional): {"A": {"coherence": 1-5, ...}, "B": {...}} on the five aesthetics. Signed in
        with Hugging Face (the session cookie), the vote counts as your account's."""
        return cast_vote(services, battle_id, preference, feedback, ratings, request, profile)

    gr.api(listen, api_name="listen", **limits)
    gr.api(vote, api_name="vote", **limits)

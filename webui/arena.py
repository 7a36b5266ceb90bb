"""Arena handlers: issue a battle, report listening, vote, refresh a reveal.

The server decides everything (:class:`annotation.arena.Arena` and :mod:`annotation.rules`): these
handlers turn a request into the arena's calls and its refusals into titled messages. The page
measures how long each player has played on *this server's* clock (:mod:`webui.arena_view`),
reports the running total to ``Arena.listen`` and unlocks the vote buttons when the rules say the
credited listening suffices. The tab's components and events are in :mod:`webui.arena_tab`; the
per-battle clip links in :mod:`webui.arena_served`.

Endpoints for ``gradio_client``: ``/new_battle`` -> (battle dict, audio A, audio B),
``/listen(battle_id, side, seconds)``, ``/vote(battle_id, preference, feedback, ratings)``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import gradio as gr

from apex.tasks import SIDES
from webui.arena_served import served_copy, served_folder
from webui.services import NotReady, Services


def session_id(request: gr.Request | None) -> str:
    """The browser session (one per page load) or ``gradio_client`` instance."""
    return (request.session_hash if request is not None else None) or "anonymous"


def client_ip(request: gr.Request | None, trusted_proxies: int = 1) -> str | None:
    """The visitor's address, as the outermost trusted proxy saw it; only ever hashed.

    ``trusted_proxies`` is ``APEX_TRUSTED_PROXIES``; see :func:`annotation.identity.client_address`
    (a client-written ``X-Forwarded-For`` hop is never the one read).
    """
    from annotation.identity import client_address

    if request is None:
        return None
    forwarded = (request.headers or {}).get("x-forwarded-for")
    peer = request.client.host if request.client else None
    return client_address(forwarded, peer, trusted_proxies)


def signin_enabled(settings: Any) -> bool:
    """Whether the Arena offers 'Sign in with Hugging Face' (``APEX_SIGNIN``).

    ``auto`` offers it only where Hugging Face's OAuth is really there: on a Space whose README
    front matter says ``hf_oauth: true`` (the Space then gets ``OAUTH_CLIENT_ID``). Elsewhere
    Gradio would mock the login with the machine's own ``hf auth login`` and fail to start without
    one, so offline and in tests there is no button and anonymous voting is all there is.
    """
    from gradio.utils import get_space

    if settings.signin == "off":
        return False
    if settings.signin == "on":
        return True
    return get_space() is not None and bool(os.environ.get("OAUTH_CLIENT_ID"))


def account_id(profile: Any) -> str | None:
    """The stable account id of a signed-in visitor (OpenID ``sub``), or None when anonymous.

    The id, not the user name, keys the voter: a renamed account stays one voter.
    """
    if not profile:
        return None
    return str(profile.get("sub") or "") or None


def _arena(services: Services) -> Any:
    try:
        return services.arena
    except NotReady as err:
        raise gr.Error(str(err), title="Please wait", print_exception=False) from None


def _refused(err: Any) -> gr.Error:
    """A :class:`~annotation.rules.VoteRefused` as a titled message (rate limits say so)."""
    title = "Please slow down" if getattr(err, "code", "") == "rate_limited" else "Not accepted"
    return gr.Error(str(err), title=title, print_exception=False)


def _arena_waiting(services: Services, progress: Any = None) -> Any:
    """The arena, waiting up to ``APEX_WARMUP_WAIT_S`` while it warms up (progress shown)."""

    def report(waited: float, line: str) -> None:
        if progress is not None:
            progress(0.0, desc=f"Waiting for the arena to open ({waited:.0f} s): {line}")

    try:
        return services.wait_for("arena", services.settings.warmup_wait_s, report)
    except NotReady as err:
        raise gr.Error(str(err), title="Please wait", print_exception=False) from None


def new_battle(
    services: Services, request: gr.Request | None, progress: Any = None
) -> tuple[dict[str, Any], Any, Any]:
    """Issue a battle to this session: (``{"battle_id", "prompt", "min_listen_s", "pool"}``, A,
    B); ``pool`` says where the clips come from. A call made while the arena warms up waits for
    it (``APEX_WARMUP_WAIT_S``), reporting to ``progress`` (a ``gr.Progress``)."""
    from annotation.rules import VoteRefused

    arena = _arena_waiting(services, progress)
    try:
        ticket = arena.new_battle(
            session_id(request), client_ip(request, services.settings.trusted_proxies)
        )
    except VoteRefused as err:
        raise _refused(err) from None
    info = {
        "battle_id": ticket.battle_id,
        "prompt": ticket.prompt,
        "min_listen_s": float(services.settings.min_listen_s),
        "pool": getattr(arena.pool, "description", ""),
    }
    folder, keep_s = served_folder(services.settings), services.settings.battle_ttl_s
    return (
        info,
        served_copy(ticket.audio_a, folder, keep_s=keep_s),
        served_copy(ticket.audio_b, folder, keep_s=keep_s),
    )


def report_listen(
    services: Services, battle_id: Any, side: Any, seconds: Any, request: gr.Request | None
) -> dict[str, Any]:
    """Report ``seconds`` played of clip ``side`` in total; return the server's credit.

    Returns:
        ``{"credit": {"A": s, "B": s}, "min_listen_s": s, "can_vote": bool}``.
    """
    from annotation.rules import VoteRefused, listen_status

    arena = _arena(services)
    try:
        # ``seconds`` goes to the rules as the client sent it: "5" or true are refused there,
        # not converted here.
        credit = arena.listen(
            battle_id,
            side,
            seconds,
            session_id(request),
            client_ip(request, services.settings.trusted_proxies),
        )
    except VoteRefused as err:
        raise _refused(err) from None
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

    ``profile`` is the ``gr.OAuthProfile`` Gradio injects for a signed-in visitor (None when
    anonymous or when sign-in is off): the vote is then keyed by the account.
    """
    from annotation.rules import VoteRefused

    arena = _arena(services)
    try:
        reveal = arena.vote(
            battle_id,
            preference,
            session_id(request),
            client_ip(request, services.settings.trusted_proxies),
            feedback=None if feedback in (None, "") else feedback,  # the rules check the types
            ratings=None if ratings in (None, "", {}) else ratings,
            account=account_id(profile),
        )
    except VoteRefused as err:
        raise _refused(err) from None
    return dataclasses.asdict(reveal)


def refresh_reveal(services: Services, reveal: dict[str, Any]) -> dict[str, Any]:
    """A reveal given while APEX was still scoring, with APEX's view filled in if ready now."""
    from annotation.arena import Reveal
    from annotation.rules import VoteRefused

    arena = _arena(services)
    try:
        return dataclasses.asdict(arena.late_reveal(Reveal(**reveal)))
    except VoteRefused as err:
        raise _refused(err) from None


def now() -> float:
    """Server clock for listening (monotonic: immune to wall-clock jumps)."""
    return time.monotonic()

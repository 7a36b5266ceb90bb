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
import math
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_DESCRIPTIONS
from webui import charts
from webui.services import NotReady, Services
from webui.uploads import remove_tree

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


#: Served links are grouped in folders by issue time (this many seconds each), so old ones are
#: removed a folder at a time without a stat per file (a hard link's mtime is its source's).
SERVED_BUCKET_S = 600


def _arena_waiting(services: Services, progress: Any = None) -> Any:
    """The arena, waiting up to ``APEX_WARMUP_WAIT_S`` while it warms up (progress shown)."""

    def report(waited: float, line: str) -> None:
        if progress is not None:
            progress(0.0, desc=f"Waiting for the arena to open ({waited:.0f} s): {line}")

    try:
        return services.wait_for("arena", services.settings.warmup_wait_s, report)
    except NotReady as err:
        raise gr.Error(str(err), title="Please wait", print_exception=False) from None


def served_folder(settings: Any) -> Path:
    """Where the per-battle links to arena clips live (gradio serves it as static files).

    Under the system's temp folder, not the data directory, so a clip's URL shows nothing of the
    deployment's layout; one subfolder per deployment (a hash of its data directory) so that two
    apps on one machine never remove each other's links.
    """
    deployment = hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()
    return Path(tempfile.gettempdir()) / "apex-arena-audio" / deployment[:16]


def served_copy(path: str | Path, folder: Path, *, keep_s: float = 3600.0) -> str:
    """A fresh link to the clip, under a random name, for one battle; returns its path.

    Each call makes a new name (``secrets.token_urlsafe``, 128 bits): names are neither derived
    from the pool's paths (which may be public, so a hash of them could be computed by anyone)
    nor stable across battles (a reveal would otherwise teach which system a link belongs to for
    every later battle). The link is a hard link (a copy across file systems), cheaper than
    re-encoding audio. Links older than ``keep_s`` seconds (plus one bucket) are removed here,
    a bucket folder at a time.

    Args:
        path: the clip to serve (the pool's file, or a prepared copy of it).
        folder: :func:`served_folder`.
        keep_s: how long a link must stay playable, seconds (the battle's lifetime).
    """
    path = Path(path)
    bucket = int(time.time() // SERVED_BUCKET_S)
    target_dir = folder / str(bucket)
    target = target_dir / f"{secrets.token_urlsafe(16)}{path.suffix.lower()}"
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    try:
        os.link(path, partial)
    except OSError:
        shutil.copyfile(path, partial)
    os.replace(partial, target)  # atomic: the player never sees half a file
    _remove_old_links(folder, bucket - math.ceil(keep_s / SERVED_BUCKET_S) - 1)
    return str(target)


def _remove_old_links(folder: Path, oldest_kept: int) -> None:
    """Delete the bucket folders older than ``oldest_kept`` (their battles have expired)."""
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) < oldest_kept:
            remove_tree(entry)  # another request may be removing it at the same time


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
    battle = arena.store.get_battle(ticket.battle_id)
    info = {
        "battle_id": ticket.battle_id,
        "prompt": battle.prompt if battle is not None else "",
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
    from annotation.rules import VoteRefused

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
        "can_vote": all(credit.get(s, 0.0) >= need - 1e-9 for s in SIDES),
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
    reveal_timer: Any = None  # polls a reveal given before APEX had scored its clips


def build(services: Services, tab: gr.Tab, *, concurrency: int = 32) -> None:
    """Lay out the Arena tab and wire it (see :mod:`webui.arena_events`)."""
    from webui.arena_events import wire

    gr.Markdown(CONSENT, elem_id="consent")
    if signin_enabled(services.settings):
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
        reveal_timer=gr.Timer(2.0, active=False),
    )
    wire(services, tab, w, prompt, concurrency=concurrency)


def now() -> float:
    """Server clock for listening (monotonic: immune to wall-clock jumps)."""
    return time.monotonic()

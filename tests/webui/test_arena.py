"""Arena handlers (:mod:`webui.arena`) on a real arena and store, without a server."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from tests.annotation.pool.test_scoring import GatedScorer
from tests.webui.conftest import arena_services, scoring_services
from tests.webui.test_identity_signin import request as visit
from webui import arena
from webui.services import Services


def test_new_battle_shows_the_prompt_the_arena_recorded(tmp_path: Path, settings) -> None:
    services = arena_services(
        settings.replace(salt="t", min_listen_s=0.0), tmp_path / "pool", ("s0", "s1"), clips=2
    )
    try:
        info, audio_a, audio_b = arena.new_battle(services, None)
        battle = services.get("store").get_battle(info["battle_id"])
        assert battle.prompt.startswith("prompt ")  # what the pool's clip was generated from
        assert info["prompt"] == battle.prompt
        assert {Path(audio_a).name, Path(audio_b).name}.isdisjoint({battle.clip_a, battle.clip_b})
    finally:
        services.close()


def _reveal_poll(services: Services):
    """The handler the Arena tab's reveal timer calls, as wired into its Blocks."""
    with gr.Blocks() as demo, gr.Tab("Arena") as tab:
        arena.build(services, tab)
    return next(fn.fn for fn in demo.fns.values() if fn.fn.__name__ == "_refresh")


def test_a_forged_reveal_gets_no_apex_scores_and_stops_the_poll(tmp_path: Path, settings) -> None:
    scorer = GatedScorer()
    scorer.gate.set()
    services = scoring_services(settings, tmp_path / "pool", scorer)
    pool = services.get("pool")
    try:
        poll = _reveal_poll(services)
        owner = visit(None, "owner")
        voted, _, _ = arena.new_battle(services, owner)
        reveal = arena.cast_vote(services, voted["battle_id"], "A", None, None, owner)
        unvoted, _, _ = arena.new_battle(services, owner)
        battles = [services.get("store").get_battle(b["battle_id"]) for b in (voted, unvoted)]
        assert pool.wait_scored([c for b in battles for c in (b.clip_a, b.clip_b)], timeout=30)
        pending = {**reveal, "apex_a": {}, "apex_b": {}, "apex_pending": True}
        shown, state, timer = poll({"reveal": pending}, owner)  # the voter's own: filled in
        assert "APEX preferred" in shown.value and state["reveal"] is None and not timer.active
        forged = [
            ({**pending, "battle_id": unvoted["battle_id"]}, owner),  # an open battle
            (pending, visit(None, "someone-else")),  # another session's battle
            ({**pending, "apex_model": "x"}, owner),  # not a reveal's keys
            ({"battle_id": unvoted["battle_id"], "apex_pending": True}, owner),
        ]
        for reveal, request in forged:
            shown, state, timer = poll({"reveal": reveal}, request)
            assert shown == gr.skip() and state["reveal"] is None and not timer.active
    finally:
        pool.stop_scoring()
        services.close()

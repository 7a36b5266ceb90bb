"""Arena handlers (:mod:`webui.arena`) on a real arena and store, without a server."""

from __future__ import annotations

from pathlib import Path

from tests.webui.conftest import arena_services
from webui import arena


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

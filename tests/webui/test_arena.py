"""Arena handlers (:mod:`webui.arena`) on a real arena and store, without a server."""

from __future__ import annotations

from pathlib import Path

from annotation.arena import Arena
from annotation.store import open_store
from annotation.voter_sim import write_sim_pool
from webui import arena
from webui.services import Services


def test_new_battle_shows_the_prompt_the_arena_recorded(tmp_path: Path, settings) -> None:
    settings = settings.replace(salt="t", min_listen_s=0.0)
    pool = write_sim_pool(tmp_path / "pool", ("s0", "s1"), clips_per_system=2)
    services = Services(
        settings,
        builders={
            "store": lambda s, b: open_store(s),
            "arena": lambda s, b: Arena(s, pool, b["store"], seed=0),
        },
    ).start(background=False)
    try:
        info, audio_a, audio_b = arena.new_battle(services, None)
        battle = services.get("store").get_battle(info["battle_id"])
        assert battle.prompt.startswith("prompt ")  # what the pool's clip was generated from
        assert info["prompt"] == battle.prompt
        assert {Path(audio_a).name, Path(audio_b).name}.isdisjoint({battle.clip_a, battle.clip_b})
    finally:
        services.close()

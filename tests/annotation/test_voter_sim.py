"""The simulated voters report listening the arena could have heard: never past a clip's end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from annotation.arena import Arena
from annotation.pool import ClipPool
from annotation.store import SQLiteVoteStore
from annotation.voter_sim import SimClock, run_voters, write_sim_pool
from apex.settings import Settings

STRENGTHS = {"long": 0.0, "short": 1.0}


def test_each_side_is_heard_at_most_for_its_own_clip(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", salt="sim", min_listen_s=5.0)
    pool = write_sim_pool(tmp_path / "pool", tuple(STRENGTHS), clips_per_system=4, duration_s=60.0)
    # One system's clips are 8 s long: a B side from it must not be heard for up to 60 s.
    clips = [dataclasses.replace(c, duration_s=8.0) if c.system == "short" else c for c in pool]
    pool = ClipPool(clips, pool.root)
    clock = SimClock()
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, clock=clock, seed=0)
        votes = run_voters(arena, clock, STRENGTHS, {"honest": 4}, votes_per_voter=10, seed=2)
    assert len(votes) == 40
    for side in ("a", "b"):
        length = votes[f"clip_{side}"].map(lambda clip: pool[clip].duration_s)
        heard = votes[f"total_listening_time_{side}"]
        assert ((heard >= 5.0) & (heard <= length)).all(), (side, heard[heard > length])

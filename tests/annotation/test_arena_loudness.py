"""The arena serves loudness-matched clips and records the originals' loudness with each vote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotation.arena import Arena
from annotation.loudness import measure
from annotation.pool import Clip, ClipPool
from annotation.store import SQLiteVoteStore
from annotation.voter_sim import SimClock

RATE = 44_100


def loud_and_quiet_pool(folder: Path) -> ClipPool:
    """Two clips: 12 dB over and 12 dB under -16 LUFS (stereo 997 Hz sines, 20 log10(a) LUFS)."""
    t = np.arange(4 * RATE) / RATE
    clips = []
    for name, lufs in (("loud", -4.0), ("quiet", -28.0)):
        tone = 10 ** (lufs / 20) * np.sin(2 * np.pi * 997 * t)
        path = folder / f"{name}.wav"
        sf.write(path, np.stack([tone, tone], axis=1), RATE, subtype="FLOAT")
        clips.append(Clip(name, path, path.name, name, "p", name == "quiet", 4.0))
    return ClipPool(clips, folder)


@pytest.mark.parametrize("match", [True, False])
def test_served_clips_are_matched_and_the_vote_keeps_the_originals(tmp_path, settings, match):
    settings = settings.replace(salt="s", min_listen_s=1.0, loudness_match=match)
    pool = loud_and_quiet_pool(tmp_path)
    clock = SimClock()
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, clock=clock, seed=0)
        ticket = arena.new_battle("sess", "203.0.113.9")
        battle = store.get_battle(ticket.battle_id)
        for path in (ticket.audio_a, ticket.audio_b):
            samples, rate = sf.read(path, always_2d=True)
            got = measure(samples, rate)
            if match:
                assert abs(got.lufs - settings.loudness_target_lufs) <= 0.5
                assert got.true_peak_dbtp <= settings.loudness_true_peak_dbtp
            else:
                assert Path(path) in {c.path for c in pool}  # as generated
        clock.now += 2.0
        arena.listen(ticket.battle_id, "A", 1.0, "sess")
        clock.now += 2.0
        arena.listen(ticket.battle_id, "B", 1.0, "sess")
        arena.vote(ticket.battle_id, "A", "sess", "203.0.113.9")
        row = store.votes_frame().iloc[0]
    expected = {"loud": -4.0, "quiet": -28.0}
    assert row["loudness_a"] == pytest.approx(expected[battle.clip_a], abs=0.1)
    assert row["loudness_b"] == pytest.approx(expected[battle.clip_b], abs=0.1)
    assert row["loudness_matched"] is match
    assert (row["duration_a"], row["duration_b"]) == (4.0, 4.0)
    assert row["instrumental_a"] is (battle.clip_a == "quiet")


def test_warm_up_matches_every_clip_in_the_background(tmp_path, settings) -> None:
    settings = settings.replace(salt="s")
    pool = loud_and_quiet_pool(tmp_path)
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, seed=0)
        arena.warm_loudness().join(timeout=60)
        folder = Path(settings.cache_dir) / "arena-loudness"
        assert len(list(folder.glob("matched-*.wav"))) == 2
        before = {p: p.stat().st_mtime_ns for p in folder.glob("*.wav")}
        ticket = arena.new_battle("sess")  # served from what the warm-up made
        assert {Path(ticket.audio_a), Path(ticket.audio_b)} == set(before)
        assert {p: p.stat().st_mtime_ns for p in folder.glob("*.wav")} == before

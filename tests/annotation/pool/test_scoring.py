"""The arena opens before the pool is scored: background scoring, battle clips first, late
reveals, re-scoring for a new model, APEX_MAX_AUDIO_S on pool clips, APEX_POOL=auto offline."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from annotation.arena import Arena
from annotation.pool import ClipPool, load_pool
from annotation.pool.scoring import BACKGROUND, URGENT
from annotation.store import SQLiteVoteStore
from apex.audio import AudioError
from apex.tasks import SCORE_NAMES
from tests.annotation.pool.test_clip_pool import tone

SESSION, IP = "listener", "203.0.113.9"


class GatedScorer:
    """Scores by file name once ``gate`` is set; records every call (paths, priority)."""

    def __init__(self, version: str = "1", gate: threading.Event | None = None) -> None:
        self.version = version
        self.gate = gate or threading.Event()
        self.calls: list[tuple[list[str], int]] = []
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def score(self, inputs, priority=0):
        from apex.scorer import ScoreResult

        with self._lock:
            self.calls.append(([Path(p).stem for p in inputs], priority))
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        value = float(self.version)
        return [
            ScoreResult(
                scores={n: value + len(Path(p).stem) / 100 for n in SCORE_NAMES},
                model_id="gated",
                model_version=self.version,
            )
            for p in inputs
        ]

    def compare(self, a, b) -> float:
        return 0.7 if a.scores["coherence"] >= b.scores["coherence"] else 0.3

    def info(self) -> dict:
        return {"model_id": "gated", "version": self.version, "encoder_id": "test"}


def pool_folder(root: Path, systems=("alpha", "beta", "gamma"), per_system: int = 4) -> Path:
    rows = []
    for s, system in enumerate(systems):
        for k in range(per_system):
            name = f"audio/{system}_{k}.wav"
            tone(root / name, 1.5, 200.0 * (s + 1) + 10 * k)
            rows.append((name, system, f"prompt {k}", True))
    frame = pd.DataFrame(rows, columns=["file_name", "system", "prompt", "is_instrumental"])
    frame.to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture
def arena_setup(tmp_path: Path, settings):
    settings = settings.replace(salt="s", min_listen_s=0.0, rate_limit_votes=10_000)
    pool = ClipPool.from_audiofolder(pool_folder(tmp_path / "pool"), cache_dir=tmp_path / "c")
    store = SQLiteVoteStore(settings.store_path)
    yield settings, pool, store
    pool.stop_scoring()
    store.close()


def test_battles_and_votes_before_any_clip_is_scored(arena_setup) -> None:
    settings, pool, store = arena_setup
    pool.awaiting_scorer = True  # the app's model is still loading
    arena = Arena(settings, pool, store, seed=0)
    ticket = arena.new_battle(SESSION, IP)
    reveal = arena.vote(ticket.battle_id, "A", SESSION, IP)
    assert pool.scoring_progress()["scored"] == 0
    assert reveal.apex_pending and reveal.apex_pick is None and reveal.apex_a == {}
    assert "still scoring" in reveal.apex_note
    assert store.votes_frame().iloc[0]["apex_model_version"] is None  # APEX had no view


def test_reveal_fills_in_once_the_battle_is_scored(arena_setup) -> None:
    settings, pool, store = arena_setup
    scorer = GatedScorer()
    pool.start_scoring(scorer)
    arena = Arena(settings, pool, store, scorer, seed=0)
    ticket = arena.new_battle(SESSION, IP)
    battle = store.get_battle(ticket.battle_id)
    early = arena.vote(ticket.battle_id, "A", SESSION, IP)  # the vote never waits for APEX
    assert early.apex_pending and early.apex_pick is None
    assert arena.late_reveal(early).apex_pending  # still nothing while the model is blocked
    scorer.gate.set()
    assert pool.wait_scored([battle.clip_a, battle.clip_b], timeout=30)
    late = arena.late_reveal(early)
    assert not late.apex_pending and late.apex_note == ""
    assert late.apex_a == pool[battle.clip_a].scores and set(late.apex_a) == set(SCORE_NAMES)
    expected = "A" if late.apex_a["coherence"] >= late.apex_b["coherence"] else "B"
    assert late.apex_pick == expected and late.apex_agrees == (expected == "A")
    assert late.model_version == "gated@1"
    # A battle issued now that its clips are scored reveals at once.
    assert pool.wait_scored(timeout=30)
    ticket = arena.new_battle("other", IP)
    reveal = arena.vote(ticket.battle_id, "B", "other", IP)
    assert not reveal.apex_pending and reveal.apex_pick in ("A", "B")
    assert store.votes_frame().iloc[-1]["apex_model_version"] == "gated@1"


def test_battle_clips_issued_during_warm_up_are_scored_first(arena_setup) -> None:
    settings, pool, store = arena_setup
    arena = Arena(settings, pool, store, seed=3)
    battle = store.get_battle(arena.new_battle(SESSION, IP).battle_id)
    scorer = GatedScorer()
    scorer.gate.set()
    pool.start_scoring(scorer)
    assert pool.wait_scored(timeout=30)
    first_paths, first_priority = scorer.calls[0]
    assert sorted(first_paths) == sorted([battle.clip_a, battle.clip_b])
    assert first_priority == URGENT
    assert all(priority == BACKGROUND for _, priority in scorer.calls[1:])
    scored_twice = [p for paths, _ in scorer.calls for p in paths]
    assert sorted(scored_twice) == sorted(c.clip_id for c in pool)  # each clip exactly once


def test_battle_clips_jump_the_running_background_queue(arena_setup) -> None:
    _, pool, _ = arena_setup
    scorer = GatedScorer()
    gate_first = scorer.gate
    pool.start_scoring(scorer)
    assert scorer.entered.wait(30)  # the background lane holds its first batch at the gate
    in_flight = set(scorer.calls[0][0])
    waiting = [c.clip_id for c in pool if c.clip_id not in in_flight]
    pool.prioritize(waiting[-2:])  # two clips at the back of the queue
    gate_first.set()
    assert pool.wait_scored(timeout=30)
    # The next call after the batch in flight is the battle's, ahead of the waiting queue.
    assert scorer.calls[1] == (waiting[-2:], URGENT)
    assert all(priority == BACKGROUND for _, priority in scorer.calls[2:])


def test_rescore_keeps_old_scores_until_replaced_with_their_version(arena_setup) -> None:
    _, pool, _ = arena_setup
    old = GatedScorer(version="1")
    old.gate.set()
    pool.start_scoring(old)
    assert pool.wait_scored(timeout=30)
    assert {c.model_version for c in pool} == {"gated@1"}
    new = GatedScorer(version="2")
    pool.start_scoring(new)  # a second call re-scores with the new model
    assert new.entered.wait(30)
    # While the new model is busy, every clip still shows the old model's score, labelled so.
    assert {c.model_version for c in pool} == {"gated@1"}
    assert pool.scoring_progress() == {
        "total": 12, "scored": 0, "failed": 0, "model_version": "gated@2", "active": True,
    }  # fmt: skip
    new.gate.set()
    assert pool.wait_scored(timeout=30)
    assert {c.model_version for c in pool} == {"gated@2"}
    assert all(c.scores["coherence"] >= 2.0 for c in pool)


def test_unscorable_clip_stays_servable_and_its_reveal_says_why(arena_setup) -> None:
    settings, pool, store = arena_setup

    class Broken(GatedScorer):
        def score(self, inputs, priority=0):
            raise AudioError("decoder exploded")

    pool.start_scoring(Broken())
    assert pool.wait_scored(timeout=30)
    assert len(pool.score_errors) == len(pool) == 12
    assert "decoder exploded" in next(iter(pool.score_errors.values()))
    arena = Arena(settings, pool, store, seed=0)
    reveal = arena.vote(arena.new_battle(SESSION, IP).battle_id, "A", SESSION, IP)
    assert not reveal.apex_pending and "could not score" in reveal.apex_note


class BuggyScorer(GatedScorer):
    """A scorer with a programming error (not a clip it cannot score)."""

    def score(self, inputs, priority=0):
        raise TypeError("score() got an unexpected keyword argument 'prio'")


def test_a_scorer_bug_in_the_background_is_logged_and_shown_on_every_clip(
    arena_setup, caplog
) -> None:
    _, pool, _ = arena_setup
    with caplog.at_level("ERROR", logger="annotation.pool.scoring"):
        pool.start_scoring(BuggyScorer())
        assert pool.wait_scored(timeout=30)
    assert len(pool) == 12  # nothing left the pool
    assert len(pool.score_errors) == 12
    assert all("(a bug)" in why and "TypeError" in why for why in pool.score_errors.values())
    bugs = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert bugs and "a bug" in bugs[0].getMessage()


def test_one_unreadable_clip_costs_its_batch_mates_nothing(arena_setup) -> None:
    _, pool, _ = arena_setup
    gate = threading.Event()
    gate.set()

    class OneBad(GatedScorer):
        def score(self, inputs, priority=0):
            if any("beta_1" in str(p) for p in inputs):
                raise AudioError("beta_1: not an audio file")
            return super().score(inputs, priority)

    pool.start_scoring(OneBad(gate=gate))
    assert pool.wait_scored(timeout=30)
    assert list(pool.score_errors) == ["beta_1"]
    assert sum(bool(clip.scores) for clip in pool) == 11


def test_over_long_pool_clip_is_skipped_with_its_reason(tmp_path: Path, settings) -> None:
    folder = pool_folder(tmp_path / "pool", per_system=1)
    tone(folder / "audio" / "long.wav", 4.0, 500.0)
    meta = pd.read_csv(folder / "metadata.csv")
    meta.loc[len(meta)] = ["audio/long.wav", "alpha", "prompt 0", True]
    meta.to_csv(folder / "metadata.csv", index=False)
    pool = load_pool(settings.replace(pool=str(folder), max_audio_s=3.0))
    assert "long" not in pool and len(pool) == 3
    assert dict(pool.skipped)["audio/long.wav"] == (
        "4.0 s is longer than APEX_MAX_AUDIO_S=3 s; trim the clip or raise APEX_MAX_AUDIO_S"
    )
    assert "long" in load_pool(settings.replace(pool=str(folder), max_audio_s=5.0))


def test_header_check_is_cached_by_path_size_and_mtime(tmp_path: Path) -> None:
    folder, cache = pool_folder(tmp_path / "pool", per_system=1), tmp_path / "cache"
    first = ClipPool.from_audiofolder(folder, cache_dir=cache)
    entries = sorted((cache / "pool" / "audio").glob("header-*.json"))
    assert len(entries) == 3
    assert all(c.content_hash == "" for c in first)  # nothing hashed to open the pool
    digest = first.content_hash("alpha_0")  # hashed when scoring first needs it, then kept
    again = ClipPool.from_audiofolder(folder, cache_dir=cache)
    assert again["alpha_0"].content_hash == digest and again["beta_0"].content_hash == ""
    tone(folder / "audio" / "alpha_0.wav", 2.5, 300.0)  # replaced file: new size and mtime
    changed = ClipPool.from_audiofolder(folder, cache_dir=cache)
    assert changed["alpha_0"].duration_s == pytest.approx(2.5, abs=0.01)
    assert changed["alpha_0"].content_hash == "" and changed.content_hash("alpha_0") != digest


def test_auto_pool_offline_is_the_demo_corpus_and_says_why(settings) -> None:
    pool = load_pool(settings.replace(pool="auto", demo_clips=16))
    assert {clip.system for clip in pool} and "synthetic demo corpus" in pool.description
    assert "Hub is not reachable" in pool.description


def test_auto_pool_degrades_when_the_hub_answers_the_probe_but_not_the_listing(
    settings, monkeypatch
) -> None:
    import apex.checkpoints

    # The probe is the network boundary; the listing then runs the real huggingface_hub
    # client, which refuses in offline mode (HF_HUB_OFFLINE=1 for the whole test run).
    monkeypatch.setattr(apex.checkpoints, "hub_reachable", lambda timeout_s=3.0: True)
    pool = load_pool(settings.replace(pool="auto", demo_clips=16))
    assert "synthetic demo corpus" in pool.description
    assert "could not list the batches of music-arena/music-arena-dataset" in pool.description

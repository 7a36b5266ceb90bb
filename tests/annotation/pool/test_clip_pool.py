"""Clip pool: audiofolder metadata, validation with bad clips skipped, score cache, load_pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from annotation.pool import ClipPool, PoolError, load_pool
from apex.audio import AudioError
from apex.tasks import SCORE_NAMES

RATE = 24_000


def tone(path: Path, seconds: float, freq: float) -> None:
    t = np.arange(int(seconds * RATE)) / RATE
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32), RATE)


def make_folder(root: Path, *, bad: bool = True, fmt: str = "csv") -> Path:
    rows = []
    for s, system in enumerate(("alpha", "beta", "gamma")):
        for k in range(2):
            name = f"audio/{system}_{k}.wav"
            tone(root / name, 1.5 + k, 220.0 * (s + 1))
            rows.append((name, system, f"prompt {k}", k == 0))
    if bad:
        (root / "audio" / "broken.wav").write_bytes(b"RIFF not really audio")
        tone(root / "audio" / "short.wav", 0.3, 440.0)
        rows += [
            ("audio/broken.wav", "alpha", "p", True),
            ("audio/short.wav", "beta", "p", True),
            ("audio/missing.wav", "beta", "p", True),
            ("../outside.wav", "beta", "p", True),
            ("audio/alpha_0.wav", "alpha", "dup", "maybe"),
        ]
    meta = pd.DataFrame(rows, columns=["file_name", "system", "prompt", "is_instrumental"])
    if fmt == "csv":
        meta.to_csv(root / "metadata.csv", index=False)
    else:
        meta.to_json(root / "metadata.jsonl", orient="records", lines=True)
    return root


class CountingScorer:
    """Scores by file name; counts every clip it is asked to score."""

    def __init__(self, fail_on: str | None = None, version: str = "1") -> None:
        self.calls: list[str] = []
        self.fail_on, self.version = fail_on, version

    def score(self, inputs, priority=0):
        from apex.scorer import ScoreResult

        self.calls += [Path(p).name for p in inputs]
        if self.fail_on and any(Path(p).name == self.fail_on for p in inputs):
            raise AudioError(f"cannot score {self.fail_on}")
        return [
            ScoreResult(scores={n: float(len(Path(p).name)) for n in SCORE_NAMES}, preference=0.5)
            for p in inputs
        ]

    def compare(self, a, b) -> float:
        return 0.5

    def info(self) -> dict:
        return {"model_id": "counting", "version": self.version, "encoder_id": "fallback"}


def scored_pool(folder: Path, scorer, cache: Path | None = None) -> ClipPool:
    """The pool of ``folder`` once ``scorer`` has scored (or failed) every clip."""
    pool = ClipPool.from_audiofolder(folder, cache_dir=cache)
    pool.start_scoring(scorer, cache_dir=cache)
    assert pool.wait_scored(timeout=60)
    pool.stop_scoring()
    return pool


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_valid_clips_kept_bad_ones_reported(tmp_path: Path, fmt: str) -> None:
    pool = ClipPool.from_audiofolder(make_folder(tmp_path / "pool", fmt=fmt))
    assert len(pool) == 6 and {c.system for c in pool} == {"alpha", "beta", "gamma"}
    reasons = dict(pool.skipped)
    assert set(reasons) == {
        "audio/broken.wav",
        "audio/short.wav",
        "audio/missing.wav",
        "../outside.wav",
        "audio/alpha_0.wav",
    }
    assert "not found" in reasons["audio/missing.wav"]
    assert "outside" in reasons["../outside.wav"]
    assert "duplicate" in reasons["audio/alpha_0.wav"]
    clip = pool["beta_1"]
    assert clip.duration_s == pytest.approx(2.5, abs=0.01) and clip.is_instrumental is False
    assert clip.path.is_file() and clip.file_name == "audio/beta_1.wav" and clip.scores == {}
    frame = pool.frame()
    assert list(frame.columns[:3]) == ["clip_id", "system", "prompt"] and len(frame) == 6


def test_scores_cached_once_per_clip_and_model(tmp_path: Path) -> None:
    folder, cache = make_folder(tmp_path / "pool", bad=False), tmp_path / "cache"
    scorer = CountingScorer()
    pool = scored_pool(folder, scorer, cache)
    assert len(scorer.calls) == 6 and pool.model_version == "counting@1"
    assert set(pool["alpha_0"].scores) == set(SCORE_NAMES)
    again = CountingScorer()
    pool2 = scored_pool(folder, again, cache)
    assert again.calls == []  # everything came from the cache
    assert pool2["alpha_0"].scores == pool["alpha_0"].scores
    assert pool2.result("alpha_0").preference == 0.5  # rebuilt ScoreResult for compare()
    newer = CountingScorer(version="2")
    scored_pool(folder, newer, cache)
    assert len(newer.calls) == 6  # a new model version scores afresh


def test_rescore_with_a_new_model_replaces_scores_and_version(tmp_path: Path) -> None:
    folder, cache = make_folder(tmp_path / "pool", bad=False), tmp_path / "cache"
    pool = ClipPool.from_audiofolder(folder, cache_dir=cache)
    pool.start_scoring(CountingScorer(), cache_dir=cache)
    assert pool.wait_scored(timeout=60)
    newer = CountingScorer(version="2")
    newer.score = lambda inputs, priority=0, old=newer.score: [  # the new model scores 1.0
        type(r)(scores=dict.fromkeys(SCORE_NAMES, 1.0), preference=0.1) for r in old(inputs)
    ]
    pool.start_scoring(newer, cache_dir=cache)  # what the refit worker does after a swap
    assert pool.wait_scored(timeout=60)
    assert pool.model_version == "counting@2" and len(newer.calls) == 6
    assert all(clip.scores == dict.fromkeys(SCORE_NAMES, 1.0) for clip in pool)
    assert pool.result("alpha_0").preference == 0.1
    again = CountingScorer(version="2")
    fresh = ClipPool.from_audiofolder(folder, cache_dir=cache)
    fresh.start_scoring(again, cache_dir=cache)
    assert fresh.wait_scored(timeout=60)
    assert again.calls == []  # cached per model, like the first scoring


def test_wait_scored_on_an_unknown_clip_raises_pool_error_and_the_pool_still_works(
    tmp_path: Path,
) -> None:
    folder, cache = make_folder(tmp_path / "pool", bad=False), tmp_path / "cache"
    pool = ClipPool.from_audiofolder(folder, cache_dir=cache)
    with pytest.raises(PoolError, match=r"'nope'.*not in the pool.*pass ids"):
        pool.wait_scored(["alpha_0", "nope"], timeout=1)
    pool.start_scoring(CountingScorer(), cache_dir=cache)  # the lock was not left held
    assert pool.wait_scored(["alpha_0"], timeout=60)
    pool.stop_scoring()


def test_one_unscorable_clip_is_not_fatal(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "pool", bad=False)
    pool = scored_pool(folder, CountingScorer(fail_on="beta_0.wav"))
    assert len(pool) == 6 and sum(bool(clip.scores) for clip in pool) == 5
    assert pool.score_errors == {"beta_0": "scoring failed: cannot score beta_0.wav"}


def test_refuses_unusable_folders(tmp_path: Path) -> None:
    with pytest.raises(PoolError, match="does not exist"):
        ClipPool.from_audiofolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolError, match=r"no metadata\.csv"):
        ClipPool.from_audiofolder(tmp_path / "empty")
    pd.DataFrame({"file_name": ["a.wav"]}).to_csv(tmp_path / "empty" / "metadata.csv")
    with pytest.raises(PoolError, match="lacks column"):
        ClipPool.from_audiofolder(tmp_path / "empty")
    pd.DataFrame({"file_name": ["a.wav"], "system": ["x"], "is_instrumental": [True]}).to_csv(
        tmp_path / "empty" / "metadata.csv"
    )
    with pytest.raises(PoolError, match="no usable clip"):
        ClipPool.from_audiofolder(tmp_path / "empty")


def test_load_pool_local_folder_and_offline_hub(tmp_path: Path, settings) -> None:
    folder = make_folder(tmp_path / "pool", bad=False)
    assert len(load_pool(settings.replace(pool=str(folder)))) == 6
    with pytest.raises(PoolError, match="APEX_POOL=demo"):
        load_pool(settings.replace(pool="some-owner/some-dataset"))
    with pytest.raises(PoolError, match="neither"):
        load_pool(settings.replace(pool=str(tmp_path / "missing" / "dir")))


def test_load_pool_demo(settings) -> None:
    pool = load_pool(settings.replace(pool="demo", demo_clips=16))
    assert len(pool) >= 8 and len({clip.system for clip in pool}) >= 2 and not pool.skipped


def test_real_scorer_scores_the_pool_and_the_arena_reveals_its_pick(tmp_path: Path, settings):
    """The real apex Scorer (fallback encoder, small random heads) through pool and arena."""
    torch = pytest.importorskip("torch")
    from annotation.arena import Arena
    from annotation.store import SQLiteVoteStore
    from apex.checkpoints import ModelInfo
    from apex.encoders import FALLBACK_DIM, FallbackEncoder
    from apex.heads import ApexHeads, HeadsConfig
    from apex.scorer import Scorer

    torch.manual_seed(0)
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=FALLBACK_DIM, hidden=[16, 8]))
    info = ModelInfo("test-heads", version="3", kind="custom", encoder_id="fallback")
    scorer = Scorer(heads, info, FallbackEncoder(), device="cpu")
    folder = make_folder(tmp_path / "pool", bad=False)
    pool = scored_pool(folder, scorer, tmp_path / "cache")
    assert len(pool) == 6 and pool.model_version == "test-heads@3"
    for clip in pool:
        assert set(clip.scores) == set(SCORE_NAMES)
        assert all(1.0 <= clip.scores[n] <= 5.0 for n in SCORE_NAMES[2:])
    settings = settings.replace(salt="s", min_listen_s=0.0)
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, scorer, seed=0)
        ticket = arena.new_battle("sess", "192.0.2.1")
        reveal = arena.vote(ticket.battle_id, "B", "sess", "192.0.2.1")
        battle = store.get_battle(ticket.battle_id)
        p_a = scorer.compare(pool.result(battle.clip_a), pool.result(battle.clip_b))
        assert reveal.apex_probability == pytest.approx(max(p_a, 1 - p_a))
        assert reveal.apex_pick == ("A" if p_a >= 0.5 else "B")
        assert reveal.apex_a == pool[battle.clip_a].scores
        assert store.votes_frame().iloc[0]["apex_model_version"] == "test-heads@3"

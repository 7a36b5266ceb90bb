"""The refit worker: schedule, promotion swaps the scorer, failures keep the champion serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from annotation.refit_job import RefitWorker, ratings_frame, run_refit_from_store
from apex.checkpoints import ModelInfo, save_model
from apex.encoders import Embedding
from apex.heads import ApexHeads, HeadsConfig
from apex.scorer import Scorer

DIM = 6


class FakeStore:
    """The two store calls the worker makes, over a DataFrame of votes."""

    def __init__(self, votes: pd.DataFrame | None = None) -> None:
        self.votes = votes if votes is not None else pd.DataFrame()

    def votes_frame(self, since_row: int = 0) -> pd.DataFrame:
        return self.votes

    def counts(self) -> dict[str, int]:
        return {"votes": len(self.votes)}


def _heads(bias: float) -> ApexHeads:
    torch.manual_seed(0)
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=DIM, hidden=[8], dropout=0.0))
    with torch.no_grad():
        heads.score_out.weight.zero_()
        heads.score_out.bias.fill_(bias)  # streams ~100 (bias 10) or ~0 (bias -10)
    return heads


def _embedding() -> Embedding:
    layers = torch.randn(2, 1, DIM)
    return Embedding(
        layers=layers,
        layers_padded=layers,
        seconds=torch.tensor([30.0, 12.0]),
        encoder_id="fallback",
    )


def _outcome(version: Path, promote: bool):
    decision = SimpleNamespace(promote=promote, reasons=["because"])
    return SimpleNamespace(version=version, decision=decision)


def _saved(tmp_path: Path, name: str, bias: float) -> Path:
    return save_model(
        _heads(bias), tmp_path / name, metadata={"encoder_id": "fallback", "version": name}
    )


def test_ratings_frame_collects_both_sides() -> None:
    votes = pd.DataFrame(
        {
            "clip_a": ["x", "y"],
            "clip_b": ["y", "z"],
            "ratings_a": [{"musicality": 4}, None],
            "ratings_b": [None, {"clarity": 2, "coherence": 5}],
        }
    )
    frame = ratings_frame(votes)
    assert list(frame["clip_id"]) == ["x", "z"]
    assert frame.loc[1, "clarity"] == 2.0


def test_promotion_swaps_the_scorer(settings, tmp_path: Path) -> None:
    scorer = Scorer(_heads(-10.0), ModelInfo("old", encoder_id="fallback"), device="cpu")
    new = _saved(tmp_path, "new", 10.0)
    worker = RefitWorker(settings, scorer, FakeStore(), refit=lambda s, st: _outcome(new, True))
    assert worker.run_once()
    assert scorer.info()["model_id"] == "new"
    assert scorer.score_embedding(_embedding()).scores["score_streams"] > 99
    assert worker.status.last_promoted and worker.status.last_version == "new"


def test_refused_challenger_leaves_the_champion(settings, tmp_path: Path) -> None:
    scorer = Scorer(_heads(-10.0), ModelInfo("old", encoder_id="fallback"), device="cpu")
    new = _saved(tmp_path, "new", 10.0)
    worker = RefitWorker(settings, scorer, FakeStore(), refit=lambda s, st: _outcome(new, False))
    assert not worker.run_once()
    assert scorer.info()["model_id"] == "old"
    assert worker.status.last_reasons == ["because"]


def test_a_refit_that_raises_leaves_the_champion_serving(settings) -> None:
    scorer = Scorer(_heads(-10.0), ModelInfo("old", encoder_id="fallback"), device="cpu")

    def broken(settings, store):
        raise RuntimeError("disk full (simulated)")

    worker = RefitWorker(settings, scorer, FakeStore(), refit=broken)
    assert not worker.run_once()
    assert "disk full" in worker.status.last_error
    assert scorer.info()["model_id"] == "old"
    assert scorer.score_embedding(_embedding()).scores["score_streams"] < 1


def test_unloadable_promoted_model_leaves_the_champion(settings, tmp_path: Path) -> None:
    scorer = Scorer(_heads(-10.0), ModelInfo("old", encoder_id="fallback"), device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    worker = RefitWorker(settings, scorer, FakeStore(), refit=lambda s, st: _outcome(empty, True))
    assert not worker.run_once()
    assert worker.status.last_error and scorer.info()["model_id"] == "old"


def test_schedule_by_votes_and_hours(settings) -> None:
    now = [0.0]
    store = FakeStore(pd.DataFrame({"x": range(3)}))
    cfg = settings.replace(refit_min_votes=5, refit_hours=2.0)
    worker = RefitWorker(cfg, None, store, clock=lambda: now[0])
    assert not worker.due()  # 3 votes existed at start: none new
    store.votes = pd.DataFrame({"x": range(7)})
    assert not worker.due()  # 4 new < 5, and the hours are not up
    now[0] = 2 * 3600.0
    assert worker.due()  # hours up and something new
    store.votes = pd.DataFrame({"x": range(8)})
    now[0] = 0.0
    assert worker.due()  # 5 new votes
    off = RefitWorker(settings.replace(refit_hours=0.0, refit_min_votes=100), None, store)
    now[0] = 1e9
    assert not off.due()


def test_background_thread_runs_on_trigger_without_blocking(settings, tmp_path: Path) -> None:
    scorer = Scorer(_heads(-10.0), ModelInfo("old", encoder_id="fallback"), device="cpu")
    new = _saved(tmp_path, "new", 10.0)
    release = threading.Event()

    def slow(settings, store):
        release.wait(5)
        return _outcome(new, True)

    worker = RefitWorker(settings, scorer, FakeStore(), refit=slow, poll_s=0.05).start()
    try:
        worker.trigger()
        t0 = time.perf_counter()
        while not worker.status.running and time.perf_counter() - t0 < 5:
            time.sleep(0.01)
        assert worker.status.running
        # scoring is not blocked while the refit trains: the old model answers while it runs
        assert scorer.score_embedding(_embedding()).scores["score_streams"] < 1
        assert worker.status.running and worker.status.runs == 0
        release.set()
        while worker.status.runs == 0 and time.perf_counter() - t0 < 5:
            time.sleep(0.01)
        assert scorer.info()["model_id"] == "new"
    finally:
        release.set()
        worker.stop()


def test_hot_swap_is_atomic_under_concurrent_scoring() -> None:
    """Every result comes wholly from one model: its id, song score and timeline agree."""
    high = (_heads(10.0), ModelInfo("high", encoder_id="fallback"))
    low = (_heads(-10.0), ModelInfo("low", encoder_id="fallback"))
    scorer = Scorer(*low, device="cpu")
    emb = _embedding()
    stop, bad, seen = threading.Event(), [], set()

    def score() -> None:
        while not stop.is_set():
            r = scorer.score_embedding(emb)
            is_high = r.scores["score_streams"] > 50
            seen.add(r.model_id)
            timeline = [s["score_streams"] > 50 for s in r.segments]
            if (r.model_id == "high") != is_high or any(t != is_high for t in timeline):
                bad.append(r)

    threads = [threading.Thread(target=score) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(60):
        scorer.swap(*(high if i % 2 == 0 else low))
        time.sleep(0.002)
    stop.set()
    for t in threads:
        t.join()
    assert not bad
    assert seen == {"high", "low"}


def test_run_refit_from_store_with_an_empty_store_says_so(settings) -> None:
    with pytest.raises(ValueError, match="no votes"):
        run_refit_from_store(settings, FakeStore())

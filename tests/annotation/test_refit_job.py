"""The refit worker with real refits (demo corpus, own process): promotion swaps the scorer and
survives a restart, a worse challenger and a pinned model are not swapped in, simulated votes
train only when asked, failures keep the champion serving, scoring goes on during a refit."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from annotation.refit_job import ratings_frame, run_refit_from_store
from annotation.refit_worker import RefitWorker
from annotation.store import VoteRecord
from apex.encoders import Embedding
from apex.heads import ApexHeads, HeadsConfig
from apex.loader import load_scorer
from apex.settings import Settings

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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the 48-clip demo corpus, its engagement shards and demo model."""
    from apex.demo.model import demo_engagement, ensure_demo_model

    root = tmp_path_factory.mktemp("refit-job") / "data"
    settings = Settings.from_env({}, data_dir=root, demo_clips=48)
    ensure_demo_model(settings)
    demo_engagement(settings)
    return root


def _settings(built: Path, tmp_path: Path, **changes) -> Settings:
    root = tmp_path / "data"
    shutil.copytree(built, root)
    return Settings.from_env({}, data_dir=root, demo_clips=48, **changes)


def _listener_votes(settings: Settings, n: int, source: str = "live", start: float = 1.7e9):
    """A real SQLite store holding ``n`` votes of listeners with the hidden demo taste."""
    from annotation.store import open_store
    from apex.demo import ensure_demo_corpus, load_metadata
    from apex.demo.listeners import hidden_utility, listener_votes

    meta = load_metadata(ensure_demo_corpus(settings))
    ids = meta["clip_id"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    a = rng.integers(0, len(ids), n)
    b = (a + rng.integers(1, len(ids), n)) % len(ids)
    prefs = listener_votes(hidden_utility(meta), ids[a], ids[b], rng)
    store = open_store(settings)
    for i in range(n):
        store.insert_vote(
            VoteRecord(
                vote_id=uuid.uuid4().hex, battle_uuid=uuid.uuid4().hex, timestamp=start + 30 * i,
                user_pseudonym="u", session_pseudonym="s", prompt="", is_instrumental=False,
                system_a="x", system_b="y", clip_a=ids[a[i]], clip_b=ids[b[i]], audio_a="",
                audio_b="", preference=str(prefs[i]), source=source,
            )
        )  # fmt: skip
    return store


def test_promotion_swaps_the_scorer_and_survives_a_restart(built: Path, tmp_path: Path) -> None:
    settings = _settings(built, tmp_path)
    store = _listener_votes(settings, 300)
    scorer = load_scorer(settings=settings)
    assert scorer.info()["kind"] == "demo"
    worker = RefitWorker(settings, scorer, store)
    assert worker.run_once(), worker.info()
    status = worker.status
    assert status.last_promoted and status.last_error is None
    assert (
        status.last_figures["challenger"]["accuracy"] >= status.last_figures["serving"]["accuracy"]
    )
    assert scorer.info()["version"] == status.last_version
    assert scorer.info()["model_id"] == "apex-arena-refit"
    restarted = load_scorer(settings=settings)
    assert restarted.info()["version"] == status.last_version
    assert restarted.info()["encoder_id"] == "fallback"  # the encoder it was trained on


def test_a_worse_challenger_is_refused_and_the_champion_serves(built: Path, tmp_path: Path) -> None:
    settings = _settings(built, tmp_path)
    store = _listener_votes(settings, 200)
    scorer = load_scorer(settings=settings)
    old = scorer.info()["version"]

    def crippled(settings, store):  # the real refit, trained badly on purpose
        return run_refit_from_store(
            settings, store, scorer=scorer, train={"epochs": 1, "lr": 1e-7}, warm_start=False
        )

    worker = RefitWorker(settings, scorer, store, refit=crippled)
    assert not worker.run_once()
    assert worker.status.last_promoted is False and worker.status.last_error is None
    assert any("worse" in r for r in worker.status.last_reasons)
    assert scorer.info()["version"] == old


def test_a_pinned_model_is_not_swapped(built: Path, tmp_path: Path) -> None:
    settings = _settings(built, tmp_path, model="demo")
    store = _listener_votes(settings, 300)
    scorer = load_scorer(settings.model, settings=settings)
    old = scorer.info()["version"]
    worker = RefitWorker(settings, scorer, store)
    assert not worker.run_once()
    assert worker.status.last_promoted  # recorded in the registry ...
    assert scorer.info()["version"] == old  # ... but the pinned model keeps serving


def test_simulated_votes_train_only_when_asked(built: Path, tmp_path: Path) -> None:
    settings = _settings(built, tmp_path)
    store = _listener_votes(settings, 200, source="simulated")
    with pytest.raises(ValueError, match="no votes from sources 'live'"):
        run_refit_from_store(settings, store)
    asked = settings.replace(refit_sources="live,simulated")
    outcome = run_refit_from_store(
        asked, store, scorer=load_scorer(settings=asked), in_process=True
    )
    assert outcome.reports["challenger"]["pairwise"]["n"] == 40  # 20 % of 200, held out


def test_a_refit_that_fails_leaves_the_champion_serving(built: Path, tmp_path: Path) -> None:
    settings = _settings(built, tmp_path, engagement=str(tmp_path / "no-such-folder"))
    store = _listener_votes(settings, 50)
    scorer = load_scorer(settings=settings)
    old = scorer.info()["version"]
    worker = RefitWorker(settings, scorer, store)
    assert not worker.run_once()
    assert "APEX_ENGAGEMENT" in worker.status.last_error
    assert scorer.info()["version"] == old


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


def test_background_refit_does_not_block_scoring(built: Path, tmp_path: Path) -> None:
    settings = _settings(built, tmp_path)
    store = _listener_votes(settings, 300)
    scorer = load_scorer(settings=settings)
    old = scorer.info()["version"]
    worker = RefitWorker(settings, scorer, store, poll_s=0.05).start()
    clip = next(iter(sorted((settings.demo_dir / "audio").iterdir())))
    try:
        worker.trigger()
        t0 = time.perf_counter()
        while not worker.status.running and time.perf_counter() - t0 < 10:
            time.sleep(0.01)
        assert worker.status.running
        # the refit trains in its own process: the old model answers meanwhile
        assert scorer.score([clip])[0].model_version == old
        while worker.status.runs == 0 and time.perf_counter() - t0 < 600:
            time.sleep(0.1)
        assert worker.status.last_promoted, worker.info()
        assert scorer.score([clip])[0].model_version == worker.status.last_version
    finally:
        worker.stop()


def test_run_refit_from_store_with_an_empty_store_says_so(settings) -> None:
    with pytest.raises(ValueError, match="no votes"):
        run_refit_from_store(settings, FakeStore(pd.DataFrame({"source": []})))


def test_engagement_path_setting(built: Path, tmp_path: Path) -> None:
    from annotation.refit_job import engagement_path

    auto = _settings(built, tmp_path)
    path, note = engagement_path(auto)
    assert "engagement-demo" in str(path) and "demo corpus" in note
    own = auto.data_dir / "engagement"
    shutil.copytree(path.parent, own)
    assert engagement_path(auto) == (own, "")
    assert engagement_path(auto.replace(engagement=str(own))) == (own, "")
    with pytest.raises(FileNotFoundError, match="APEX_ENGAGEMENT"):
        engagement_path(auto.replace(engagement=str(tmp_path / "empty-or-missing")))
    # a Hub dataset id, offline (the test run has no network) and not cached: none, said so
    offline, note = engagement_path(auto.replace(engagement="someone/apex-engagement"))
    assert offline is None and "could not be downloaded" in note and "once while online" in note
    # auto without shards for a MERT-served app: none (the demo's are another encoder's)
    empty = auto.replace(data_dir=tmp_path / "elsewhere")
    assert engagement_path(empty, "m-a-p/MERT-v1-95M")[0] is None
    # once downloaded it is read from the Hugging Face cache without a request (its real layout:
    # datasets--owner--name/refs/main -> snapshots/<commit>/...)
    repo = auto.cache_dir / "engagement-hub" / "datasets--someone--apex-engagement"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(path.parent, repo / "snapshots" / commit / "data")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    cached, note = engagement_path(auto.replace(engagement="someone/apex-engagement"))
    assert cached == repo / "snapshots" / commit and note == ""

"""Scorer: full path on the tiny encoder, offline fallback to the demo model, compare, hot swap."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from apex.audio import SAMPLE_RATE, Audio, AudioError
from apex.checkpoints import ModelInfo, load_model, save_model
from apex.encoders import load_encoder
from apex.encoders.base import Embedding, Encoder
from apex.heads import ApexHeads, HeadsConfig
from apex.loader import load_scorer
from apex.scorer import DEMO_NOTICE, Scorer, ScoreResult, percentile_of
from apex.settings import Settings
from apex.tasks import ENGAGEMENT, SCORE_NAMES, SCORE_RANGES

RATE = 24_000


def _song(seconds: float, seed: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    return tone.astype(np.float32), RATE


def _random_heads(num_layers: int, dim: int, seed: int) -> ApexHeads:
    heads = ApexHeads(HeadsConfig(num_layers=num_layers, dim=dim, hidden=[16, 8]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in heads.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return heads


def _assert_in_range(scores: dict[str, float]) -> None:
    assert set(scores) == set(SCORE_NAMES)
    for name, value in scores.items():
        low, high = SCORE_RANGES[name]
        assert low <= value <= high, name


@pytest.fixture(scope="module")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings with the smallest demo corpus, its demo model built once for this module."""
    from apex.demo import model as demo_model

    settings = Settings.from_env({}, data_dir=tmp_path_factory.mktemp("scorer"), demo_clips=16)
    demo_model.ensure_demo_model(settings)
    yield settings


@pytest.fixture(scope="module")
def tiny_scorer(tiny_hubert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    """ApexHeads saved in our format and loaded with the tiny HuBERT encoder via load_scorer."""
    root = tmp_path_factory.mktemp("tiny-scorer")
    encoder = load_encoder(str(tiny_hubert_dir))
    heads = _random_heads(encoder.num_layers, encoder.dim, seed=0)
    save_model(heads, root / "heads", metadata={"encoder_id": encoder.encoder_id})
    settings = Settings.from_env({}, data_dir=root / "data")
    return load_scorer(str(root / "heads"), encoder=str(tiny_hubert_dir), settings=settings)


def test_full_path_segments_timeline_and_cache(tiny_scorer: Scorer) -> None:
    song = _song(65.0, seed=1)
    first = tiny_scorer.score(song)
    assert len(first) == 1
    result = first[0]
    _assert_in_range(result.scores)
    assert result.duration_s == pytest.approx(65.0)
    starts = [row["start_s"] for row in result.segments]
    ends = [row["end_s"] for row in result.segments]
    assert starts == pytest.approx([0.0, 30.0, 60.0])
    assert ends == pytest.approx([30.0, 60.0, 65.0])
    assert set(result.uncertainty) == set(SCORE_NAMES)
    assert all(value > 0 for value in result.uncertainty.values())
    assert result.preference is None  # untrained preference output is not reported
    assert not result.is_demo and DEMO_NOTICE not in result.warnings
    assert ScoreResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    encoder = tiny_scorer.encoder
    hits, misses = encoder.hits, encoder.misses
    again = tiny_scorer.score([song])[0]
    assert (encoder.hits, encoder.misses) == (hits + 1, misses)
    assert again.scores == result.scores


def test_batch_order_independence(tiny_scorer: Scorer) -> None:
    a, b, c = _song(4.0, 2), _song(31.0, 3), _song(2.5, 4)
    forward = tiny_scorer.score([a, b, c])
    backward = tiny_scorer.score([c, b, a])
    for x, y in zip(forward, reversed(backward), strict=True):
        assert x.scores == pytest.approx(y.scores, abs=1e-9)
        assert x.segments == y.segments


def test_bad_input_raises_audio_error(tiny_scorer: Scorer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(AudioError):
        tiny_scorer.score([bad])


def test_heads_must_fit_the_encoder(tiny_scorer: Scorer) -> None:
    wrong = _random_heads(1, 7, seed=1)
    before = tiny_scorer.info()
    with pytest.raises(ValueError, match="encoder"):
        tiny_scorer.swap(wrong, ModelInfo(model_id="wrong"))
    assert tiny_scorer.info() == before


def test_offline_auto_falls_back_to_demo(demo_settings: Settings, tmp_path: Path) -> None:
    scorer = load_scorer("auto", settings=demo_settings)
    info = scorer.info()
    assert info["is_demo"] and info["kind"] == "demo"
    assert info["encoder_is_fallback"]
    assert any("published APEX model is not available" in n for n in info["notices"])
    assert set(info["metrics"]["regression"]) == set(SCORE_NAMES)  # held-out, per score
    path = tmp_path / "song.wav"
    sf.write(path, *_song(3.0, seed=5))
    result = scorer.score([path])[0]
    assert result.is_demo and DEMO_NOTICE in result.warnings
    assert any("Fallback encoder" in w for w in result.warnings)
    _assert_in_range(result.scores)
    assert set(result.percentiles) == set(ENGAGEMENT)
    assert all(0.0 <= v <= 100.0 for v in result.percentiles.values())
    assert result.preference is not None
    assert result.name == "song.wav"
    again = load_scorer("demo", settings=demo_settings)  # cached: same model directory
    assert again.info()["heads_from"] == info["heads_from"]


def test_compare_is_symmetric(demo_settings: Settings, tiny_scorer: Scorer) -> None:
    demo = load_scorer("demo", settings=demo_settings)
    for scorer in (demo, tiny_scorer):  # preference logit / logistic link on scores
        a, b = scorer.score([_song(3.0, 6), _song(3.0, 7)])
        p_ab, p_ba = scorer.compare(a, b), scorer.compare(b, a)
        assert 0.0 < p_ab < 1.0
        assert p_ab == pytest.approx(1.0 - p_ba, abs=1e-12)
        assert scorer.compare(a, a) == pytest.approx(0.5)


def _embedding(seed: int) -> Embedding:
    gen = torch.Generator().manual_seed(seed)
    layers = torch.randn(2, 3, 8, generator=gen)
    return Embedding(layers, layers.clone(), torch.tensor([30.0, 4.0]), encoder_id="enc")


def _two_models() -> dict[str, tuple[ApexHeads, ModelInfo]]:
    return {
        name: (_random_heads(3, 8, seed), ModelInfo(model_id=name, encoder_id="enc"))
        for seed, name in enumerate(("first", "second"))
    }


class _GatedEncoder(Encoder):
    """Encodes to ``_embedding(0)`` once ``release`` is set (``entered``: it is waiting)."""

    encoder_id, sample_rate, num_layers, dim = "enc", SAMPLE_RATE, 3, 8

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def settings_key(self) -> str:
        return "gated"

    def encode(self, audio: Audio) -> Embedding:
        self.entered.set()
        assert self.release.wait(30), "the test never released the encoder"
        return _embedding(0)


def test_swap_between_encode_and_heads_scores_with_the_new_model() -> None:
    """A swap that lands while a call is encoding: the heads that run are the new ones, all of
    the result (scores, timeline, model id) comes from them."""
    models = _two_models()
    want = {n: Scorer(*m, device="cpu").score_embedding(_embedding(0)) for n, m in models.items()}
    assert want["first"].scores != want["second"].scores
    encoder = _GatedEncoder()
    scorer = Scorer(*models["first"], encoder, device="cpu")
    results: list[ScoreResult] = []
    worker = threading.Thread(target=lambda: results.extend(scorer.score([_song(2.0, 1)])))
    worker.start()
    assert encoder.entered.wait(30)
    scorer.swap(*models["second"])  # the call is inside encode: its heads have not run yet
    encoder.release.set()
    worker.join(30)
    (result,) = results
    assert result.model_id == "second"
    assert result.scores == want["second"].scores
    assert result.segments == want["second"].segments


def test_swap_while_the_heads_run_keeps_the_call_on_one_model() -> None:
    """A swap between the song-level and the per-segment forward of one call: the call finishes
    with the heads it started with (no result mixes two models)."""
    models = _two_models()
    want = {n: Scorer(*m, device="cpu").score_embedding(_embedding(0)) for n, m in models.items()}
    scorer = Scorer(*models["first"], device="cpu")
    heads = scorer._state[0]
    entered, release = threading.Event(), threading.Event()
    segments = heads.segments

    def gated_segments(x: torch.Tensor) -> dict[str, torch.Tensor]:
        entered.set()  # the song-level forward has run with these heads
        assert release.wait(30)
        return segments(x)

    heads.segments = gated_segments
    results: list[ScoreResult] = []
    worker = threading.Thread(target=lambda: results.append(scorer.score_embedding(_embedding(0))))
    worker.start()
    assert entered.wait(30)
    scorer.swap(*models["second"])
    release.set()
    worker.join(30)
    (result,) = results
    assert result.model_id == "first"
    assert result.scores == want["first"].scores
    assert result.segments == want["first"].segments
    assert scorer.score_embedding(_embedding(0)).scores == want["second"].scores  # later calls


def test_percentiles_and_calibrated_uncertainty() -> None:
    heads = _random_heads(3, 8, seed=3)
    reference = sorted(np.linspace(0, 100, 201).tolist())
    meta = {
        "reference_distribution": {name: reference for name in ENGAGEMENT},
        "calibration": {name: {"scale": 2.0} for name in SCORE_NAMES},
    }
    plain = Scorer(heads, ModelInfo("m", encoder_id="enc"), device="cpu")
    calibrated = Scorer(heads, ModelInfo("m", encoder_id="enc", metadata=meta), device="cpu")
    a, b = plain.score_embedding(_embedding(1)), calibrated.score_embedding(_embedding(1))
    assert a.percentiles == {}
    for name in ENGAGEMENT:
        assert b.percentiles[name] == pytest.approx(b.scores[name], abs=0.5)
    for name in SCORE_NAMES:
        assert b.uncertainty[name] == pytest.approx(2.0 * a.uncertainty[name])
    assert percentile_of(-1.0, reference) == 0.0
    assert percentile_of(101.0, reference) == 100.0
    assert percentile_of(50.0, [50.0, 50.0]) == 50.0


def test_demo_model_build_is_serialised(monkeypatch, tmp_path: Path) -> None:
    from apex.demo import model as demo_model

    calls = []

    def fake_build(settings, directory, *, version):
        calls.append(version)
        heads = _random_heads(1, 4, seed=0)
        threading.Event().wait(0.2)  # long enough for the other thread to queue on the lock
        return save_model(heads, directory, metadata={"encoder_id": "fallback", "kind": "demo"})

    monkeypatch.setattr(demo_model, "build_demo_model", fake_build)
    settings = Settings.from_env({}, data_dir=tmp_path)
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(demo_model.ensure_demo_model(settings)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(paths)) == 1
    _, info = load_model(paths[0])
    assert info.is_demo
    assert not [p for p in settings.models_dir.iterdir() if p.name.endswith(".tmp")]


def test_score_result_from_dict_ignores_unknown_keys_and_needs_scores() -> None:
    result = ScoreResult(scores={"coherence": 3.0}, segments=[{"start_s": 0.0, "end_s": 5.0}])
    assert ScoreResult.from_dict({**result.to_dict(), "from_a_newer_version": 1}) == result
    with pytest.raises(KeyError, match="scores"):
        ScoreResult.from_dict({"duration_s": 5.0})

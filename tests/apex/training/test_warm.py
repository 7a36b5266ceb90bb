"""Warm start from the published heads, score anchoring, the encoder space of the data, and the
arena clips embedded inside the refit: on the replicas of ``amaai-lab/apex`` and
``m-a-p/MERT-v1-95M`` (Hugging Face cache layout, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from apex.tasks import SCORE_NAMES
from apex.training.config import TrainConfig
from tests.apex import hub_replicas as hr

ENC = hr.MERT_REPO


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("warm")
    built = hr.build_cache(root / "hf-cache", root)
    return {"cache": root / "hf-cache", **built}


@pytest.fixture
def offline_cache(replicas, monkeypatch) -> Path:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(replicas["cache"]))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(replicas["cache"]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return replicas["cache"]


def _published(replicas):
    from apex.checkpoints import load_model

    heads, info = load_model(str(replicas["apex_snapshot"]))
    # a directory load is "published" from that directory; the data says MERT-v1-95M
    return heads, info


def _songs(heads, n: int, seed: int, split: str = "train") -> pd.DataFrame:
    """Songs with [1, 13, 32] embeddings and the published heads' own predictions as targets."""
    from apex.training.loop import predict

    x = np.random.default_rng(seed).standard_normal((n, 13, 32)).astype(np.float32)
    out = predict(heads, x)
    frame = pd.DataFrame(
        {
            "id": [f"s{seed}-{i}" for i in range(n)],
            "embedding": list(x[:, None]),
            "encoder_id": ENC,
            "platform": "arena",
            "split": split,
            "duration_s": 30.0,
        }
    )
    for name in SCORE_NAMES:
        frame[name] = out[name]
    return frame


def test_warm_start_begins_far_below_a_random_start(replicas) -> None:
    from apex.training.data import assemble
    from apex.training.loop import train
    from apex.training.warm import family_of, warm_start

    heads, info = _published(replicas)
    frame = pd.concat([_songs(heads, 120, 0), _songs(heads, 30, 1, "val")], ignore_index=True)
    data, _ = assemble(frame)
    model, started = warm_start((heads, info), ENC)
    assert started.startswith("serving ") and model.has_preference
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-4, progress=False, device="cpu")
    warm = train(data, TrainConfig(**{**cfg.__dict__, **family_of(model)}), model=model)
    cold = train(data, TrainConfig(**{**cfg.__dict__, "family": "reference"}))
    w, c = warm.history[0]["val_criterion"], cold.history[0]["val_criterion"]
    print(f"first-epoch validation criterion: warm {w:.4f}, random init {c:.4f}")
    assert w < 0.1 * c
    assert warm_start((heads, info), "fallback")[0] is None  # another encoder: never warm


def _votes(utility: pd.Series, n: int, seed: int = 0) -> pd.DataFrame:
    from apex.demo.listeners import listener_votes

    rng = np.random.default_rng(seed)
    ids = utility.index.to_numpy()
    a = rng.integers(0, len(ids), n)
    b = (a + rng.integers(1, len(ids), n)) % len(ids)
    return pd.DataFrame(
        {
            "battle_uuid": [f"b{i}" for i in range(n)],
            "clip_a": ids[a],
            "clip_b": ids[b],
            "preference": listener_votes(utility, ids[a], ids[b], rng, 4.0),
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "s"),
        }
    )


def test_votes_without_engagement_keep_the_scores_anchored(replicas, tmp_path: Path) -> None:
    from apex.checkpoints import load_model
    from apex.demo.listeners import embedding_utility
    from apex.training.data import assemble
    from apex.training.gate import DRIFT_BOUNDS
    from apex.training.loop import predict
    from apex.training.refit import RefitConfig, run_refit
    from apex.training.registry import ModelRegistry

    heads, info = _published(replicas)
    pool = _songs(heads, 60, 2, "pool")[
        ["id", "embedding", "encoder_id", "platform", "split", "duration_s"]
    ]
    data, transform = assemble(None, pool)
    assert set(data.split) == {"train", "test"}
    mixed = heads.mix(torch.as_tensor(data.song_x)).detach().numpy()
    utility = embedding_utility(dict(zip(data.ids, mixed, strict=True)))
    votes = _votes(utility, 600)
    cfg = RefitConfig(train=TrainConfig(epochs=60, batch_size=32, lr=3e-3, pref_weight=1.0,
                                        progress=False, device="cpu"))  # fmt: skip
    out = run_refit(data, transform, votes, ModelRegistry(tmp_path / "reg"), cfg,
                    serving=(heads, info))  # fmt: skip
    print("drift:", out.drift, "reasons:", out.decision.reasons)
    assert out.decision.promote, out.decision.reasons
    assert set(out.drift) == set(SCORE_NAMES)
    assert all(out.drift[n] <= DRIFT_BOUNDS[n] for n in SCORE_NAMES)
    assert max(out.drift.values()) < 1e-4  # anchored: the score paths are the serving weights
    assert any("anchored" in n for n in out.notes)
    assert out.decision.challenger["accuracy"] > out.decision.champion["accuracy"] + 0.1
    # saved in the published layout with our identity; the same loader reads it back
    back, back_info = load_model(str(out.version))
    assert back_info.kind == "custom" and back_info.version == out.version.name
    assert back_info.metadata["preference_trained"] and back.has_preference
    x = data.song_x[:8]
    same = predict(back, x), predict(heads, x)
    assert all(np.allclose(same[0][n], same[1][n], atol=1e-4) for n in SCORE_NAMES)


def test_the_gate_refuses_scores_that_drift_beyond_the_bound() -> None:
    from apex.training.gate import gate

    report = {"pairwise": {"accuracy": 0.8, "n": 40}, "regression": {}}
    serving = {"pairwise": {"accuracy": 0.5, "n": 40}, "regression": {}}
    ok = gate(report, serving, drift={"score_streams": 1.5, "clarity": 0.05})
    assert ok.promote and "scores anchored" in ok.reasons[-1]
    bad = gate(report, serving, drift={"score_streams": 2.5, "clarity": 0.05})
    assert not bad.promote and "score_streams moved by 2.500" in bad.reasons[-1]


def test_refit_process_embeds_clips_and_leaves_other_encoders_out(
    replicas, offline_cache: Path, tmp_path: Path
) -> None:
    """The refit's own process embeds the clips the votes name (cached or not), reads the
    published model by repo id + revision from the cache, and leaves engagement rows of another
    encoder out with one clear note."""
    from apex.audio import load_audio
    from apex.demo import build_demo_corpus, load_metadata
    from apex.demo.listeners import embedding_utility
    from apex.encoders import load_encoder
    from apex.training.data import write_shard
    from apex.training.request import EncoderSpec, PoolClip, RefitError, RefitRequest, ServingModel
    from apex.training.worker import execute

    corpus = build_demo_corpus(tmp_path / "pool", seed=0, n_clips=12)
    meta = load_metadata(corpus)
    clips = [
        PoolClip(str(r.clip_id), str(corpus / r.file_name), float(r.duration_s))
        for r in meta.itertuples()
    ]
    embeddings = tmp_path / "embeddings"
    encoder = load_encoder(ENC, precision="reference", cache_dir=embeddings, local_files_only=True)
    heads, _ = _published(replicas)
    vectors = {}
    for clip in clips[:6]:  # the app scored half of them; the rest were never embedded
        emb = encoder.encode(load_audio(clip.path))
        vectors[clip.clip_id] = heads.mix(emb.layers_padded[emb.mask]).mean(0).detach().numpy()
    assert len(list(embeddings.rglob("*.safetensors"))) == 6
    votes = _votes(embedding_utility(vectors), 80)
    # votes on never-embedded clips too
    votes.loc[:9, "clip_b"] = [c.clip_id for c in clips[6:]] + [clips[6].clip_id] * 4
    votes.to_parquet(tmp_path / "votes.parquet")
    other = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(5)],
            "embedding": list(np.ones((5, 1, 3), np.float32)),
            "encoder_id": "fallback",
            "platform": "demo",
            "split": "train",
            "streams": np.arange(5.0),
        }
    )
    write_shard(other, tmp_path / "engagement" / "0.parquet")
    request = RefitRequest(
        votes=str(tmp_path / "votes.parquet"),
        registry=str(tmp_path / "reg"),
        engagement=str(tmp_path / "engagement"),
        serving=ServingModel(hr.APEX_REPO, hr.APEX_REVISION, "epoch-0"),
        encoder=EncoderSpec(
            ENC, encoder.encoder_id, encoder.settings_key(), str(embeddings), precision="reference"
        ),
        clips=clips,
        train={"epochs": 5},
    )
    out = execute(RefitRequest.from_json(request.to_json()))
    assert out.pool_rows == 12  # every clip a vote names, cached or not
    assert len(list(embeddings.rglob("*.safetensors"))) == 12  # and cached for the app too
    left_out = [n for n in out.notes if "left out" in n]
    assert left_out == [
        "5 engagement rows embedded by fallback were left out: the serving model reads "
        "m-a-p/MERT-v1-95M embeddings, and encoders are never mixed"
    ]
    assert out.warm_start.startswith(f"serving {hr.APEX_REPO}")
    assert "serving" in out.reports  # compared with the published model, the first time too
    moved = ServingModel(hr.APEX_REPO, "f" * 40)
    with pytest.raises(RefitError, match="restart the app"):
        moved.load()

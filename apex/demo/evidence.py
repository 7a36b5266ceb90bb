"""Offline evidence on the synthetic demo corpus: what training, preferences and the gate do.

:func:`demo_evidence` (behind ``apex eval --demo``):

1. embeds every demo clip with the fallback encoder (cached under ``settings.cache_dir``) and writes
   engagement shards (raw streams/likes, the five aesthetics, the corpus's split);
2. simulates arena votes (:func:`apex.demo.simulate_votes`) and splits them **by time**: the latest
   20 % are held out;
3. trains the ablation on the same data: popularity-only heads, full heads (engagement data only),
   and full heads refit with the Bradley-Terry loss on the earlier votes;
4. installs the engagement-only heads as champion of a scratch registry and runs the real
   :func:`apex.training.refit.run_refit` with preferences as challenger, so the gate's decision and
   its reasons are the production code path's.

Nothing is tuned to the simulation: the configuration is the refit's default apart from epochs,
batch size and learning rate sized for ~300 training clips.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from apex.evaluation.metrics import (
    evaluate_model,
    format_table,
    pairwise_metrics,
    preference_utility,
)
from apex.settings import Settings
from apex.training.battles import battles_from_votes, time_split
from apex.training.data import load_engagement, write_shard
from apex.training.loop import TrainConfig, predict
from apex.training.refit import RefitConfig, run_refit, train_with_votes
from apex.training.registry import ModelRegistry
from apex.training.saving import model_metadata, save_trained

DEMO_PLATFORM = "demo-synth"
#: Training configuration of every demo model (the ablation differs only in task / pref_weight).
DEMO_TRAIN = TrainConfig(
    epochs=150, batch_size=64, lr=2e-3, patience=30, loss="uncertainty", progress=False
)


def demo_engagement(settings: Settings) -> Path:
    """Engagement shards of the demo corpus embedded with the fallback encoder (built once)."""
    from apex.audio import load_audio
    from apex.demo import DEMO_VERSION, ensure_demo_corpus, load_metadata
    from apex.encoders import CachedEncoder, EmbeddingCache, FallbackEncoder

    corpus = ensure_demo_corpus(settings)
    out = settings.data_dir / "engagement-demo" / f"v{DEMO_VERSION}-s{settings.demo_seed}"
    shard = out / f"n{settings.demo_clips}.parquet"
    if shard.is_file():
        return shard
    meta = load_metadata(corpus)
    encoder = CachedEncoder(FallbackEncoder(), EmbeddingCache(settings.cache_dir / "embeddings"))
    embeddings = []
    for name in meta["file_name"]:
        emb = encoder.encode(load_audio(corpus / name, sample_rate=encoder.sample_rate))
        embeddings.append(emb.layers[emb.mask].numpy())  # [S, 1, D], valid segments only
    frame = meta.rename(columns={"clip_id": "id"}).assign(
        embedding=embeddings, encoder_id=encoder.encoder_id, platform=DEMO_PLATFORM
    )
    return write_shard(frame, shard)  # atomic: a killed build leaves no half shard


def demo_evidence(
    settings: Settings, *, n_votes: int = 4000, seed: int = 0, holdout_fraction: float = 0.2
) -> dict:
    """Train the ablation and run the gate on the demo corpus; returns a JSON-ready report."""
    from apex.demo import ensure_demo_corpus, load_metadata, simulate_votes

    shard = demo_engagement(settings)
    data, transform = load_engagement(shard)
    votes = simulate_votes(load_metadata(ensure_demo_corpus(settings)), n_votes, seed=seed)
    battles = battles_from_votes(votes, data.index_of())
    fit_battles, held_out = time_split(battles, holdout_fraction)
    unseen = np.isin(held_out.a, data.songs_in("val", "test")) & np.isin(
        held_out.b, data.songs_in("val", "test")
    )
    variants = {
        "popularity-only": replace(DEMO_TRAIN, task="popularity"),
        "full": DEMO_TRAIN,
        "full+preferences": replace(DEMO_TRAIN, pref_weight=1.0),
    }
    reports, results = {}, {}
    for name, config in variants.items():
        result = train_with_votes(data, replace(config, seed=seed), fit_battles)
        use_pref = config.pref_weight > 0
        report = evaluate_model(
            result.model, data, battles=held_out, use_preference=use_pref, tasks=config.tasks
        )
        outputs = predict(result.model, data.song_x)
        utility = preference_utility(
            {k: outputs[k] for k in (*config.tasks, "preference")}, use_pref
        )
        report["pairwise_unseen_clips"] = pairwise_metrics(utility, held_out.take(unseen))
        reports[name], results[name] = report, result

    # the gate, through the production refit: engagement-only champion vs refit with preferences
    registry = ModelRegistry(settings.models_dir / "demo-evidence")
    shutil.rmtree(registry.root, ignore_errors=True)
    champion = registry.new_version()
    meta = model_metadata(results["full"], data, transform, version=champion.name, kind="demo")
    save_trained(results["full"], champion, meta)
    registry.promote(champion)
    outcome = run_refit(
        data,
        transform,
        votes,
        registry,
        RefitConfig(train=replace(DEMO_TRAIN, pref_weight=1.0, seed=seed)),
    )
    return {
        "corpus": {
            "clips": len(data.ids),
            "encoder": data.encoder_id,
            "test_clips": len(data.songs_in("test")),
        },
        "votes": {
            "simulated": len(votes),
            "usable": len(battles),
            "train": len(fit_battles),
            "held_out": len(held_out),
            "held_out_unseen_clips": int(unseen.sum()),
            "both_bad_excluded": int((votes["preference"] == "BOTH_BAD").sum()),
        },
        "ablation": reports,
        "gate": {
            "promote": outcome.decision.promote,
            "reasons": outcome.decision.reasons,
            "challenger": outcome.decision.challenger,
            "champion": outcome.decision.champion,
            "version": outcome.version.name,
        },
    }


def format_evidence(evidence: dict) -> str:
    """The demo report for people: ablation table, preference gain, the gate's verdict."""
    ab = evidence["ablation"]
    lines = [
        "APEX Arena demo evidence (SYNTHETIC demo corpus, fallback encoder; not real music)",
        f"clips: {evidence['corpus']['clips']} ({evidence['corpus']['test_clips']} held-out test "
        f"clips for Spearman); votes: {evidence['votes']}",
        "",
        format_table(ab),
    ]
    unseen = {k: v["pairwise_unseen_clips"]["accuracy"] for k, v in ab.items()}
    lines.append(
        "pairwise accuracy, held-out votes between val/test clips only: "
        + ", ".join(f"{k} {v:.3f}" for k, v in unseen.items())
    )
    base = ab["full"]["pairwise"]["accuracy"]
    pref = ab["full+preferences"]["pairwise"]["accuracy"]
    lines.append(
        f"preferences: held-out pairwise accuracy {base:.3f} -> {pref:.3f} ({pref - base:+.3f})"
    )
    gate = evidence["gate"]
    verdict = "PROMOTED" if gate["promote"] else "REFUSED"
    lines += [
        f"gate: challenger {verdict} ({gate['version']})",
        *(f"  - {r}" for r in gate["reasons"]),
    ]
    return "\n".join(lines)

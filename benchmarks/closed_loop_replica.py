"""The loop on the product's configuration: replicas of ``amaai-lab/apex`` on ``m-a-p/MERT-v1-95M``.

``python benchmarks/closed_loop.py --published`` runs this. Offline, on the replicas of both Hub
repos in the Hugging Face cache layout (``tests/apex/hub_replicas.py``: real configs, test-size
MERT, random weights), with the demo corpus's audio as the arena's clips:

- listeners with a taste in the embeddings the published heads read
  (:func:`apex.demo.listeners.embedding_utility`, seed 3: about chance for the published scores)
  vote on pairs of arena clips, in rounds up to 500, 1,000 and 2,000 votes; **agreement** is the
  share of held-out votes (same listeners, pairs of held-out clips no refit trains on) the
  serving model predicts. Round 0 is the published model;
- after each round the production refit runs as the app runs it (its own low-priority process,
  :func:`apex.training.worker.run_in_subprocess`, a :class:`RefitRequest` naming the serving model
  by repo id + revision or registry directory, clips embedded there from the app's embedding
  cache): refit wall time and the child's peak RSS are recorded, and only a promoted challenger
  serves next;
- **drift**: mean absolute change of the seven scores on the held-out clips, serving vs
  published (no engagement data in MERT's space, so the refit is anchored);
- ``/score`` p95 over HTTP (``gradio_client`` on the launched app) idle and while the 2,000-vote
  refit runs in its process, as a ratio (target <= 1.5).

Returns the figures dict; ``closed_loop.py`` prints it as one JSON line.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROUNDS = (500, 1000, 2000)
HELD_OUT_VOTES = 1000
ROOT = Path(__file__).resolve().parents[1]


def _votes(ids: np.ndarray, utility: pd.Series, n: int, rng, start: float) -> pd.DataFrame:
    from apex.demo.listeners import listener_votes

    a = rng.integers(0, len(ids), n)
    b = (a + rng.integers(1, len(ids), n)) % len(ids)
    return pd.DataFrame(
        {
            "battle_uuid": [f"r{start:.0f}-{i}" for i in range(n)],
            "clip_a": ids[a],
            "clip_b": ids[b],
            "preference": listener_votes(utility, ids[a], ids[b], rng, 4.0),
            "timestamp": start + 30.0 * np.arange(n),
        }
    )


def _embed_all(clips, encoder, heads) -> tuple[pd.DataFrame, dict]:
    """The app's scoring pass: every clip embedded once into the embedding cache; returns the
    held-out rows and each clip's vector as the published heads mix it."""
    import torch

    from apex.audio import load_audio

    rows, mixed = [], {}
    with torch.no_grad():
        for clip in clips:
            emb = encoder.encode(load_audio(clip.path))
            layers = emb.layers_padded[emb.mask]
            mixed[clip.clip_id] = heads.mix(layers).mean(0).numpy()
            rows.append(
                {
                    "id": clip.clip_id,
                    "embedding": layers.numpy(),
                    "duration_s": 10.0,
                    "encoder_id": emb.encoder_id,
                    "platform": "arena",
                    "split": "test",
                }
            )
    return pd.DataFrame(rows), mixed


def _score_p95(url: str, song: Path, seconds: float, stop: threading.Event | None) -> list[float]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    times, end = [], time.monotonic() + seconds
    while time.monotonic() < end and not (stop is not None and stop.is_set()):
        t0 = time.perf_counter()
        client.predict(handle_file(str(song)), api_name="/score")
        times.append(1000 * (time.perf_counter() - t0))
    return times


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def run_published(clips_n: int, work: Path, seed: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from huggingface_hub import constants

    from tests.apex import hub_replicas as hr

    cache = work / "hf-cache"
    hr.build_cache(cache, work)
    os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(cache), True

    from apex.demo import build_demo_corpus, load_metadata
    from apex.demo.listeners import embedding_utility
    from apex.encoders import load_encoder
    from apex.evaluation.metrics import evaluate_model
    from apex.published import load_published
    from apex.training.battles import battles_from_votes
    from apex.training.data import to_arrays
    from apex.training.request import EncoderSpec, PoolClip, RefitRequest, ServingModel
    from apex.training.warm import score_drift
    from apex.training.worker import run_in_subprocess

    corpus = build_demo_corpus(work / "pool", seed=seed, n_clips=clips_n)
    meta = load_metadata(corpus)
    clips = [
        PoolClip(str(r.clip_id), str(corpus / r.file_name), float(r.duration_s))
        for r in meta.itertuples()
    ]
    published_heads, published_info = load_published(local_files_only=True)
    embeddings = work / "embeddings"
    encoder = load_encoder(
        hr.MERT_REPO, precision="reference", cache_dir=embeddings, local_files_only=True
    )
    t0 = time.perf_counter()
    rows, mixed = _embed_all(clips, encoder, published_heads)
    embed_s = time.perf_counter() - t0
    utility = embedding_utility(mixed, seed=3)
    rng = np.random.default_rng(seed)
    ids = np.array([c.clip_id for c in clips])
    held_ids = ids[rng.permutation(len(ids))[: len(ids) // 5]]
    arena = [c for c in clips if c.clip_id not in set(held_ids)]
    held_rows = rows[rows["id"].isin(held_ids)].reset_index(drop=True)
    held_data = to_arrays(held_rows)
    held = battles_from_votes(
        _votes(held_ids, utility, HELD_OUT_VOTES, rng, 0.0), held_data.index_of()
    )

    def agreement(heads, info) -> float:
        used = bool(info.metadata.get("preference_trained", False))
        return float(
            evaluate_model(heads, held_data, battles=held, use_preference=used)["pairwise"][
                "accuracy"
            ]
        )

    spec = EncoderSpec(
        hr.MERT_REPO,
        encoder.encoder_id,
        encoder.settings_key(),
        str(embeddings),
        precision="reference",
    )
    serving = ServingModel(hr.APEX_REPO, hr.APEX_REVISION, published_info.version)
    curve = [
        {
            "votes": 0,
            "agreement": agreement(published_heads, published_info),
            "version": "published",
        }
    ]
    arena_ids = np.array([c.clip_id for c in arena])
    votes = pd.DataFrame()
    refits = []
    for target in ROUNDS:
        new = _votes(arena_ids, utility, target - len(votes), rng, 1e9 + 30.0 * len(votes))
        votes = pd.concat([votes, new], ignore_index=True)
        votes.to_parquet(work / "votes.parquet")
        request = RefitRequest(
            votes=str(work / "votes.parquet"),
            registry=str(work / "registry"),
            serving=serving,
            encoder=spec,
            clips=arena,
            nice=10,
        )
        t0 = time.perf_counter()
        outcome = run_in_subprocess(request, work / "refit")
        refit_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if outcome.decision.promote:
            serving = ServingModel(str(outcome.version), None, outcome.version.name)
        heads, info = serving.load()
        drift = score_drift(heads, published_heads, held_data.song_x)
        curve.append(
            {
                "votes": target,
                "agreement": agreement(heads, info),
                "version": info.version,
                "promoted": outcome.decision.promote,
                "drift": drift,
            }
        )
        refits.append(
            {
                "votes": target,
                "refit_s": round(refit_s, 1),
                "peak_rss_mb": round(peak_mb),
                "reasons": outcome.decision.reasons,
            }
        )
        print(
            f"{target:5d} votes: agreement {curve[-1]['agreement']:.3f} "
            f"({'promoted' if outcome.decision.promote else 'refused'}), refit {refit_s:.0f} s, "
            f"max drift {max(drift.values()):.4f}",
            flush=True,
        )
    figures = {
        "benchmark": "closed_loop",
        "mode": "published-replica",
        "clips": clips_n,
        "embed_all_clips_s": round(embed_s, 1),
        "held_out_votes": len(held),
        "votes": [c["votes"] for c in curve],
        "agreement": [round(c["agreement"], 4) for c in curve],
        "published_agreement": round(curve[0]["agreement"], 4),
        "promoted": [c.get("promoted") for c in curve[1:]],
        "max_score_drift_final": {k: round(v, 5) for k, v in curve[-1]["drift"].items()},
        "refits": refits,
    }
    figures.update(_latency(work, cache, request))
    return figures


def _latency(work: Path, cache: Path, request) -> dict:
    """``/score`` p95 over HTTP, idle and while the last round's refit runs in its process."""
    from apex.demo import build_demo_corpus
    from apex.settings import Settings
    from tests.webui.conftest import free_port, write_song
    from webui import build_services, build_ui, launch_kwargs

    settings = Settings.from_env(
        {"APEX_MODEL": "auto", "APEX_PRECISION": "reference"},
        data_dir=work / "app",
        pool=str(build_demo_corpus(work / "app-pool", seed=1, n_clips=8)),
        refit_hours=0.0,
        port=free_port(),
    )
    services = build_services(settings)
    demo = build_ui(services)
    demo.launch(**{**launch_kwargs(services), "prevent_thread_lock": True, "quiet": True})
    try:
        services.wait(600)
        services.arena.pool.wait_scored(timeout=600)
        song = write_song(work / "song.wav", seconds=20.0)
        url = f"http://127.0.0.1:{settings.port}/"
        _score_p95(url, song, 5.0, None)  # warm-up
        idle = _score_p95(url, song, 30.0, None)
        from apex.training.worker import run_in_subprocess

        done = threading.Event()

        def refit() -> None:
            try:
                run_in_subprocess(request, work / "refit-latency")
            finally:
                done.set()

        thread = threading.Thread(target=refit, daemon=True)
        thread.start()
        time.sleep(3.0)
        busy = _score_p95(url, song, 300.0, done)
        thread.join()
    finally:
        demo.close()
        services.close()
    ratio = _p95(busy) / _p95(idle)
    print(
        f"/score p95: idle {_p95(idle):.0f} ms, during a refit {_p95(busy):.0f} ms ({ratio:.2f}x)"
    )
    return {
        "score_p95_ms_idle": round(_p95(idle), 1),
        "score_p95_ms_during_refit": round(_p95(busy), 1),
        "score_p95_ratio": round(ratio, 2),
        "score_p95_target_met": bool(ratio <= 1.5),
        "latency_calls": [len(idle), len(busy)],
        "median_ms": [round(statistics.median(idle), 1), round(statistics.median(busy), 1)],
    }

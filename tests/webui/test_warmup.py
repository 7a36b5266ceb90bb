"""Warm-up and serving settings: shared encoder batches for concurrent /score calls, API callers
that wait for the warm-up (with progress) instead of failing, and GRADIO_SERVER_PORT."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import gradio as gr
import pytest

from tests.annotation.pool.test_scoring import pool_folder
from tests.webui.conftest import free_port, scoring_services, write_song
from webui import arena as arena_ui
from webui import arena_view, score
from webui.services import Services


def fallback_scorer(**kwargs):
    """The real apex Scorer on the built-in fallback encoder with small random heads."""
    import torch

    from apex.checkpoints import ModelInfo
    from apex.encoders import FALLBACK_DIM, FallbackEncoder
    from apex.heads import ApexHeads, HeadsConfig
    from apex.scorer import Scorer

    torch.manual_seed(0)
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=FALLBACK_DIM, hidden=[16, 8]))
    info = ModelInfo("warmup-heads", version="1", kind="custom", encoder_id="fallback")
    return Scorer(heads, info, FallbackEncoder(), device="cpu", **kwargs)


class Progress:
    """Records what a handler reports to gr.Progress."""

    def __init__(self) -> None:
        self.descs: list[str] = []

    def __call__(self, value, desc=None) -> None:
        self.descs.append(desc or "")


def test_two_concurrent_score_calls_share_one_encoder_batch(settings, tmp_path: Path) -> None:
    # A generous gather window makes the sharing deterministic: the first request's batch waits
    # until the second has arrived (max_batch=2), however slowly the threads start.
    scorer = fallback_scorer(max_batch=2, gather_s=30.0)
    services = Services(settings, builders={"scorer": lambda s, b: scorer}).start(False)
    songs = [write_song(tmp_path / f"song{k}.wav", seconds=3.0, seed=k) for k in range(2)]
    results: dict[int, dict] = {}

    def call(k: int) -> None:
        results[k] = score.score_song(services, str(songs[k]))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert scorer.encoder_batches == 1  # both requests went through one encode_batch
    alone = fallback_scorer(max_batch=1, gather_s=0.0)
    for k in range(2):
        expected = alone.score([songs[k]])[0].scores
        assert results[k]["scores"] == pytest.approx(expected, rel=1e-6)
    assert alone.encoder_batches == 2  # one at a time: one batch each


def test_score_call_during_warm_up_waits_with_progress(settings, tmp_path: Path) -> None:
    gate = threading.Event()
    scorer = fallback_scorer()
    services = Services(settings, builders={"scorer": lambda s, b: gate.wait(30) and scorer})
    services.start()
    song, progress, out = write_song(tmp_path / "song.wav"), Progress(), {}
    caller = threading.Thread(
        target=lambda: out.update(score.score_song(services, str(song), progress))
    )
    caller.start()
    caller.join(2.5)
    assert caller.is_alive()  # waiting, not failing
    assert any("Waiting for the app to warm up" in d and "APEX scorer" in d for d in progress.descs)
    gate.set()
    caller.join(60)
    assert set(out["scores"]) and out["model_id"] == "warmup-heads"


def test_score_call_gives_up_after_the_warm_up_limit(settings, tmp_path: Path) -> None:
    gate = threading.Event()
    services = Services(
        settings.replace(warmup_wait_s=0.5), builders={"scorer": lambda s, b: gate.wait(30)}
    ).start()
    try:
        with pytest.raises(gr.Error, match=r"still warming up after [01] s of waiting"):
            score.score_song(services, str(write_song(tmp_path / "song.wav")))
    finally:
        gate.set()


def test_new_battle_during_warm_up_waits_then_names_the_pool(settings, tmp_path: Path) -> None:
    from annotation.arena import Arena
    from annotation.pool import load_pool
    from annotation.store import open_store

    settings = settings.replace(pool=str(pool_folder(tmp_path / "pool")), salt="s")
    gate = threading.Event()
    services = Services(
        settings,
        builders={
            "store": lambda s, b: open_store(s),
            "pool": lambda s, b: load_pool(s),
            "arena": lambda s, b: gate.wait(30) and Arena(s, b["pool"], b["store"]),
        },
    ).start()
    progress, out = Progress(), []
    caller = threading.Thread(
        target=lambda: out.append(arena_ui.new_battle(services, None, progress))
    )
    caller.start()
    caller.join(2.5)
    assert caller.is_alive() and any("arena" in d for d in progress.descs)
    gate.set()
    caller.join(60)
    info, audio_a, audio_b = out[0]
    assert info["battle_id"] and Path(audio_a).is_file() and Path(audio_b).is_file()
    assert info["pool"] == f"clips from {settings.pool}"
    services.close()


def test_gradio_server_port_and_name_win(settings, monkeypatch) -> None:
    from webui import build_ui, launch_kwargs

    port = free_port()
    monkeypatch.setenv("GRADIO_SERVER_PORT", str(port))
    monkeypatch.setenv("GRADIO_SERVER_NAME", "127.0.0.1")
    services = Services(settings.replace(host="0.0.0.0", port=free_port()), builders={})
    kwargs = launch_kwargs(services)
    assert (kwargs["server_name"], kwargs["server_port"]) == ("127.0.0.1", port)
    demo = build_ui(services)
    demo.launch(**kwargs, prevent_thread_lock=True, quiet=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as reply:
            assert reply.status == 200
    finally:
        demo.close()
    monkeypatch.setenv("GRADIO_SERVER_PORT", "http")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT='http' is not a port"):
        launch_kwargs(services)
    monkeypatch.delenv("GRADIO_SERVER_PORT")
    assert launch_kwargs(services)["server_port"] == services.settings.port


def test_pending_reveal_says_so_then_fills_in_through_the_ui_handler(
    settings, tmp_path: Path
) -> None:
    from tests.annotation.pool.test_scoring import GatedScorer

    scorer = GatedScorer()
    services = scoring_services(settings, tmp_path / "pool", scorer)
    pool = services.get("pool")
    info, _, _ = arena_ui.new_battle(services, None)
    reveal = arena_ui.cast_vote(services, info["battle_id"], "A", None, None, None)
    text = arena_view.reveal_markdown(reveal)
    assert reveal["apex_pending"] and "APEX is still scoring these clips" in text
    assert arena_ui.refresh_reveal(services, reveal, None)["apex_pending"]
    scorer.gate.set()
    battle = services.get("store").get_battle(info["battle_id"])
    assert pool.wait_scored([battle.clip_a, battle.clip_b], timeout=30)
    filled = arena_ui.refresh_reveal(services, reveal, None)
    assert not filled["apex_pending"] and "APEX preferred" in arena_view.reveal_markdown(filled)
    pool.stop_scoring()
    services.close()

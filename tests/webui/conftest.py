"""Fixtures for the UI tests: a real app launched on 127.0.0.1 on a free port, once per run.

The app is the production one (``webui.build_ui`` over ``webui.build_services``) with settings that
keep it small: a temporary data directory, the 48-clip demo corpus, a 1 s minimum listen and a
generous rate limit (the tests vote quickly from one address). The Hub is offline (see the root
conftest), so the scorer is the offline demo model, as on a fresh clone.
"""

from __future__ import annotations

import socket
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Services (demo model) and the pool's background scoring must be done within this; the demo
#: model alone may take 60 s.
WARMUP_TIMEOUT_S = 600.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_song(path: Path, seconds: float = 4.0, rate: int = 24_000, seed: int = 0) -> Path:
    """A short major-chord arpeggio with a little noise, as 16-bit mono WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    notes = 220.0 * 2 ** (np.array([0, 4, 7, 12]) / 12)
    freq = notes[(t * 4).astype(int) % len(notes)]
    signal = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


@dataclass
class LiveApp:
    """A launched app: its URL, services and Blocks."""

    url: str
    services: Any
    demo: Any


@pytest.fixture(scope="session")
def app_settings(tmp_path_factory: pytest.TempPathFactory, small_demo_corpus: Path):
    """Small, fast settings: temp data dir, the 48-clip demo corpus as pool, 1 s minimum listen."""
    from apex.settings import Settings

    return Settings.from_env(
        {},
        data_dir=tmp_path_factory.mktemp("webui") / "data",
        pool=str(small_demo_corpus),
        demo_clips=48,
        min_listen_s=1.0,
        rate_limit_votes=10_000,
        rate_limit_battles=10_000,  # the hardening test lowers it to the default for itself
        port=free_port(),
        refit_hours=0.0,  # no refit worker: these tests are not about refits
    )


@pytest.fixture(scope="session")
def live_app(app_settings) -> Iterator[LiveApp]:
    """The production app served on 127.0.0.1 until the end of the run."""
    from webui import build_services, build_ui, launch_kwargs

    services = build_services(app_settings)
    demo = build_ui(services)
    kwargs = {**launch_kwargs(services), "prevent_thread_lock": True, "quiet": True}
    demo.launch(**kwargs)
    try:
        if not services.wait(WARMUP_TIMEOUT_S):
            pytest.fail(f"services did not start: {services.status()}")
        # Battles open before the pool is scored; these tests check the scored reveal, so
        # they start once the background queue is through (the demo pool takes seconds).
        if not services.get("pool").wait_scored(timeout=WARMUP_TIMEOUT_S):
            pytest.fail(f"the pool was not scored: {services.get('pool').scoring_progress()}")
        yield LiveApp(f"http://127.0.0.1:{app_settings.port}/", services, demo)
    finally:
        demo.close()
        services.close()


@pytest.fixture
def song(tmp_path: Path) -> Path:
    """A 4 s generated song (WAV)."""
    return write_song(tmp_path / "arpeggio.wav")


def files_under(folder: Path) -> set[Path]:
    """Every file below ``folder`` (to check that an export or download leaves nothing behind)."""
    return {p for p in folder.rglob("*") if p.is_file()}


def vote_record(i: int, a: str, b: str, pref: str, instrumental: bool, p_a: float | None) -> Any:
    """Vote ``i`` of system ``a`` against ``b`` (a ``VoteRecord``; ``p_a``: APEX's P(A wins))."""
    from annotation.store import VoteRecord

    return VoteRecord(
        vote_id=f"v{i}",
        battle_uuid=f"b{i}",
        timestamp=time.time() - 100 + i,
        user_pseudonym="u",
        session_pseudonym="s",
        prompt="p",
        is_instrumental=instrumental,
        system_a=a,
        system_b=b,
        clip_a=f"{a}-{i}",
        clip_b=f"{b}-{i}",
        audio_a="a.wav",
        audio_b="b.wav",
        preference=pref,
        apex_p_a=p_a,
    )


@pytest.fixture
def make_vote() -> Callable[..., Any]:
    """:func:`vote_record`, for tests that add votes to ``store_services``."""
    return vote_record


@pytest.fixture
def store_services(settings) -> Iterator[Any]:
    """Services with only a real SQLite vote store holding 14 votes.

    "good" beats "bad" 8 times out of 10 on instrumental prompts; vocal battles are all ties.
    """
    from annotation.store import open_store
    from webui.services import Services

    store = open_store(settings)
    for i in range(10):
        pref = "A" if i < 8 else "B"
        store.insert_vote(vote_record(i, "good", "bad", pref, True, 0.7))
    for i in range(10, 14):
        store.insert_vote(vote_record(i, "good", "mid", "TIE", False, 0.6))
    services = Services(settings, builders={"store": lambda s, b: store}).start(background=False)
    yield services
    store.close()


def arena_services(settings: Any, pool_dir: Path, systems: tuple[str, ...], clips: int) -> Any:
    """Started services with a real SQLite store and an arena on a simulated pool in ``pool_dir``
    (``clips`` clips per system; the caller closes them). ``settings`` as the test wants them."""
    from annotation.arena import Arena
    from annotation.store import open_store
    from annotation.voter_sim import write_sim_pool
    from webui.services import Services

    pool = write_sim_pool(pool_dir, systems, clips_per_system=clips)
    return Services(
        settings,
        builders={
            "store": lambda s, b: open_store(s),
            "arena": lambda s, b: Arena(s, pool, b["store"], seed=0),
        },
    ).start(background=False)


def scoring_services(settings: Any, pool_dir: Path, scorer: Any) -> Any:
    """Started services with a real store, a tone pool in ``pool_dir`` scored in the background by
    ``scorer`` and an arena using it (the caller stops the pool's scoring and closes them)."""
    from annotation.arena import Arena
    from annotation.pool import load_pool
    from annotation.store import open_store
    from tests.annotation.pool.test_scoring import pool_folder
    from webui.services import Services

    services = Services(
        settings.replace(pool=str(pool_folder(pool_dir)), salt="s", min_listen_s=0.0),
        builders={
            "store": lambda s, b: open_store(s),
            "pool": lambda s, b: load_pool(s),
            "arena": lambda s, b: Arena(s, b["pool"], b["store"], scorer),
        },
    ).start(background=False)
    services.get("pool").start_scoring(scorer)
    return services

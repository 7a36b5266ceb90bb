"""Fixtures for the UI tests: a real app launched on 127.0.0.1 on a free port, once per run.

The app is the production one (``webui.build_ui`` over ``webui.build_services``) with settings that
keep it small: a temporary data directory, the 48-clip demo corpus, a 1 s minimum listen and a
generous rate limit (the tests vote quickly from one address). The Hub is offline (see the root
conftest), so the scorer is the offline demo model, as on a fresh clone.
"""

from __future__ import annotations

import socket
import wave
from collections.abc import Iterator
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

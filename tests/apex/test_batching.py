"""The shared encoder queue: visitors go before background work (waiting at most one batch), and
the ZeroGPU path (``@spaces.GPU`` on a ZeroGPU Space, plain calls anywhere else)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

from apex.audio import Audio, load_audio
from apex.batching import EncodeBatcher, on_zero_gpu
from apex.encoders import FallbackEncoder

ROOT = Path(__file__).resolve().parents[2]


def _clip(seed: int, seconds: float = 2.0) -> Audio:
    rng = np.random.default_rng(seed)
    wave = (0.1 * rng.standard_normal(int(seconds * 24_000))).astype(np.float32)
    return load_audio((wave, 24_000))


class GatedEncoder(FallbackEncoder):
    """The real fallback encoder whose first batch waits for ``gate``; records every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def encode_batch(self, audios):
        self.batches.append([a.name for a in audios])
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        return super().encode_batch(audios)


def test_a_visitor_waits_for_at_most_the_background_batch_in_flight() -> None:
    encoder = GatedEncoder()
    batcher = EncodeBatcher(encoder, max_clips=1)
    clips = {name: _clip(k) for k, name in enumerate(("bg0", "bg1", "bg2", "visitor"))}
    for name, clip in clips.items():
        clip.name = name
    threads = []

    def submit(name: str, priority: int) -> None:
        thread = threading.Thread(
            target=batcher.encode, args=([clips[name]],), kwargs={"priority": priority}
        )
        thread.start()
        threads.append(thread)

    submit("bg0", 2)
    assert encoder.entered.wait(30)  # the background batch is running
    submit("bg1", 2)
    submit("bg2", 2)
    submit("visitor", 0)
    while len(batcher._pending) < 3:  # all three queued behind the running batch
        threading.Event().wait(0.01)
    encoder.gate.set()
    for thread in threads:
        thread.join(30)
    assert encoder.batches == [["bg0"], ["visitor"], ["bg1"], ["bg2"]]


def test_off_zero_gpu_batches_are_plain_calls_and_spaces_is_never_imported() -> None:
    assert not on_zero_gpu() and "spaces" not in sys.modules
    encoder = FallbackEncoder()
    clip = _clip(0)
    (embedding,) = EncodeBatcher(encoder).encode([clip])
    assert embedding.layers.equal(encoder.encode(clip).layers)
    assert "spaces" not in sys.modules


def test_on_zero_gpu_scoring_runs_inside_spaces_gpu(tmp_path: Path) -> None:
    """A Space with ZeroGPU hardware (``SPACES_ZERO_GPU`` set, the ``spaces`` package present: a
    stand-in here that records what it decorates and when the function runs): every encoder
    batch runs inside the decorated function, and the heads stay on the CPU."""
    (tmp_path / "spaces.py").write_text(
        textwrap.dedent(
            """
            decorated, calls = [], []

            def GPU(fn):
                decorated.append(fn.__name__)
                def run(*args, **kwargs):
                    calls.append(fn.__name__)
                    return fn(*args, **kwargs)
                return run
            """
        )
    )
    script = textwrap.dedent(
        """
        import numpy as np, spaces, torch
        from apex.checkpoints import ModelInfo
        from apex.encoders import FALLBACK_DIM, FallbackEncoder
        from apex.heads import ApexHeads, HeadsConfig
        from apex.scorer import Scorer

        heads = ApexHeads(HeadsConfig(num_layers=1, dim=FALLBACK_DIM, hidden=[8]))
        scorer = Scorer(heads, ModelInfo("h", encoder_id="fallback"), FallbackEncoder())
        wave = (0.1 * np.random.default_rng(0).standard_normal(48_000)).astype(np.float32)
        results = scorer.score([(wave, 24_000), (wave[::-1].copy(), 24_000)])
        print(spaces.decorated, len(spaces.calls), len(results), scorer.device)
        """
    )
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "['_encode_batch'] 1 2 cpu"

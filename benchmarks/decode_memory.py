"""Peak memory of decoding a wide, high-rate file: block-wise ``load_audio`` against a whole decode.

Run: ``.venv/bin/python benchmarks/decode_memory.py [--rate 384000] [--channels 8] [--seconds 40]``.

A 16-bit FLAC of silence is tiny on disk however long it is, so a visitor can send a few hundred
KB that decode to gigabytes of float32. This measures, in one run and in this process (Linux
``VmHWM`` reset through ``/proc/self/clear_refs`` before each path), the peak RSS growth of:

(a) ``apex.audio.load_audio`` (refuses what exceeds the decoding budget; decodes big files block
    by block with the down-mix and resampling streamed);
(b) the baseline: the whole-file path the reference uses (``soundfile.read`` of every sample as
    float32, mean over channels, one ``torchaudio.functional.resample`` call).

It prints both peaks, the ratio baseline / block-wise, and the target (under 300 MB), then one
JSON line of all figures. The default file (384 kHz x 8 channels x 40 s) is within the budget.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apex.audio import SAMPLE_RATE, load_audio  # after the path insert
from tests.apex.test_audio import silent_flac

TARGET_MB = 300.0


def peak_growth_mb(action: Callable[[], object]) -> tuple[float, float]:
    """(peak RSS growth in MB, seconds) of ``action()`` in this process."""
    status = Path("/proc/self/status")

    def field(name: str) -> float:
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith(name))
        return int(line.split()[1]) / 1024

    Path("/proc/self/clear_refs").write_text("5")
    before, start = field("VmRSS:"), time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    del result
    return field("VmHWM:") - before, seconds


def whole_decode(data: bytes) -> torch.Tensor:
    """The baseline: every sample decoded at once, then mixed and resampled in one call."""
    import torchaudio.functional as taf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = torch.from_numpy(samples).mean(dim=1)
    del samples
    return taf.resample(mono, rate, SAMPLE_RATE)


def main() -> None:
    """Measure both paths on one generated file and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=384_000)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()

    data = silent_flac(args.rate, args.channels, args.seconds)
    samples = args.rate * args.channels * args.seconds
    block_mb, block_s = peak_growth_mb(lambda: load_audio(data))
    whole_mb, whole_s = peak_growth_mb(lambda: whole_decode(data))
    ratio = whole_mb / max(block_mb, 1.0)
    print(
        f"file: {len(data) / 1e3:.0f} KB FLAC, {args.rate} Hz x {args.channels} ch x "
        f"{args.seconds:g} s = {samples / 1e6:.0f} M samples ({samples * 4 / 1e6:.0f} MB float32)"
    )
    print(f"block-wise load_audio: peak +{block_mb:.0f} MB in {block_s:.1f} s")
    print(f"whole decode (baseline): peak +{whole_mb:.0f} MB in {whole_s:.1f} s")
    print(f"baseline / block-wise peak: {ratio:.1f}x; target < {TARGET_MB:.0f} MB")
    figures = {
        "benchmark": "decode_memory",
        "file_kb": round(len(data) / 1e3, 1),
        "input_samples_m": round(samples / 1e6, 1),
        "block_peak_mb": round(block_mb, 1),
        "whole_peak_mb": round(whole_mb, 1),
        "ratio": round(ratio, 2),
        "block_s": round(block_s, 2),
        "whole_s": round(whole_s, 2),
        "target_mb": TARGET_MB,
        "meets_target": block_mb < TARGET_MB,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Encoder speed: the APEX reference pipeline's shape vs our fast path, on one 3-minute input.

Run: ``.venv/bin/python benchmarks/score_speed.py [--seconds 180] [--batch-size 4]``.

Both paths use the same MERT-v1-95M-shaped ``HubertModel`` with random weights (speed does not
depend on the weight values; nothing is downloaded) and the same 24 kHz waveform:

(a) reference shape — as ``inference.py``: fp32, one 30 s segment per forward, the
    ``Wav2Vec2FeatureExtractor`` called on each zero-padded segment, ``torch.no_grad``, then the
    mean over time of every hidden state;
(b) fast — :class:`apex.encoders.MertEncoder` with ``precision="fast"``: one preprocessing
    pass for the song, segments batched, ``inference_mode``, weights converted to bf16 once
    (where the device has bf16), and on CPU the channels-last feature encoder and, in bf16,
    blocked attention (same parameters and arithmetic, CPU-friendly layouts;
    ``apex.encoders.hubert``);
(c) autocast — ``precision="reference"`` run under ``torch.autocast(bf16)``: fp32 weights and
    transformers' own modules, i.e. what (b) adds beyond plain autocast.

The paths take turns for ``--rounds`` rounds (order alternating) and each keeps its best round,
so bursts of load from other processes on a shared machine do not land on one path only.

It prints throughput (seconds of audio per second), the ratio (b)/(a), the largest score
difference between (a) and (b) through randomly initialised reference heads
(``apex.heads.ReferenceHeads``, task ``full``) on the 0-100 and 1-5 scales, and the share of this
machine's measured matmul peak (fp32 and bf16 GEMM, measured in the same run) that the encoder
reaches, with its FLOPs counted from the config. Then (``--pool-clips``, default 40) generated
30 s clips go through the arena pool's real background scoring queue (``ClipPool`` scoring,
``Scorer``, ``EncodeBatcher``) on the fast encoder: clips/s, audio-s/s and the share of the fast
path's audio-s/s. On CUDA (``--device``, default CUDA when present) every path and the matmul
peaks run on the GPU. It ends with one JSON line of all figures.
Other processes on the machine slow both paths alike; the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from apex.audio import SAMPLE_RATE, Audio, load_audio
from apex.encoders.hubert import build_hubert, mert_95m_config
from apex.encoders.mert import MertEncoder
from apex.heads import ReferenceHeads
from apex.tasks import AESTHETICS, ENGAGEMENT

SEGMENT_S = 30


def synthetic_song(seconds: float, seed: int = 0) -> Audio:
    """A deterministic song-like signal: chords, a bass line, pulses and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    roots = 110.0 * 2 ** (rng.integers(0, 12, size=int(seconds // 2) + 1) / 12)
    root = roots[(t // 2).astype(int)]
    wave = sum(np.sin(2 * np.pi * root * r * t) / (i + 1) for i, r in enumerate((1, 1.25, 1.5, 2)))
    wave *= 0.6 + 0.4 * (np.mod(t, 0.5) < 0.25)
    wave += 0.02 * rng.standard_normal(t.size)
    return load_audio(((0.3 * wave).astype(np.float32), SAMPLE_RATE))


def encoder_flops(config, samples: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one HubertModel forward on ``samples`` samples."""
    flops, length, channels = 0.0, samples, 1
    for dim, kernel, stride in zip(
        config.conv_dim, config.conv_kernel, config.conv_stride, strict=True
    ):
        length = (length - kernel) // stride + 1
        flops += 2.0 * length * kernel * channels * dim
        channels = dim
    frames, width = length, config.hidden_size
    flops += 2.0 * frames * channels * width  # feature projection
    group = width // config.num_conv_pos_embedding_groups
    flops += 2.0 * frames * width * group * config.num_conv_pos_embeddings  # positional conv
    per_layer = 2.0 * frames * 4 * width * width  # q, k, v, out projections
    per_layer += 4.0 * frames * frames * width  # scores and weighted sum
    per_layer += 4.0 * frames * width * config.intermediate_size  # feed-forward
    return flops + config.num_hidden_layers * per_layer


def matmul_gflops(
    dtype: torch.dtype, device: torch.device, size: int = 2048, seconds: float = 3.0
) -> float | None:
    """Sustained GEMM rate of ``device`` for ``dtype`` (best of repeated square products); on
    CUDA 8192-wide products, timed between synchronisations; None for bf16 on a CPU without it."""
    if dtype == torch.bfloat16 and device.type == "cpu" and not _cpu_has_bf16():
        return None  # emulated bf16: minutes per product, and no path of ours uses it
    size = 8192 if device.type == "cuda" else size
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)  # warm-up (oneDNN / cuBLAS kernel selection)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = max(best, 2.0 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def _cpu_has_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_pipeline(model, processor, wave: torch.Tensor) -> torch.Tensor:
    """(a): the reference loop; returns ``[S, L, D]`` (mean over all frames per layer)."""
    segment_len = SEGMENT_S * SAMPLE_RATE
    pooled = []
    for start in range(0, wave.shape[0], segment_len):
        segment = wave[start : start + segment_len]
        if segment.shape[0] < segment_len:
            segment = torch.nn.functional.pad(segment, (0, segment_len - segment.shape[0]))
        inputs = processor(segment.numpy(), sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs.to(model.device), output_hidden_states=True)
        pooled.append(torch.stack([h.mean(dim=1)[0].cpu() for h in out.hidden_states]))
    return torch.stack(pooled)


def pool_throughput(encoder: MertEncoder, heads: ReferenceHeads, clips: int, root: Path) -> dict:
    """Whole-pool background scoring: ``clips`` generated 30 s clips (44.1 kHz WAV files, so
    decoding and resampling count) through the real :class:`~annotation.pool.ClipPool` scoring
    queue and :class:`~apex.scorer.Scorer` on ``encoder``; no score cache (every clip encoded).

    Returns:
        ``{"pool_clips", "pool_clips_per_s", "pool_audio_s_per_s", "pool_seconds"}``.
    """
    import soundfile as sf

    from annotation.pool import ClipPool
    from apex.checkpoints import ModelInfo
    from apex.scorer import Scorer

    rate = 44_100
    (root / "audio").mkdir(parents=True, exist_ok=True)
    lines = ["file_name,system,prompt,is_instrumental"]
    for k in range(clips):
        wave = synthetic_song(SEGMENT_S, seed=100 + k).waveform.numpy()
        at = np.arange(SEGMENT_S * rate) * SAMPLE_RATE / rate
        wave = np.interp(at, np.arange(wave.size), wave)
        sf.write(root / "audio" / f"clip{k:03d}.wav", wave.astype(np.float32), rate, "PCM_16")
        lines.append(f"audio/clip{k:03d}.wav,system{k % 4},prompt {k // 4},true")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    pool = ClipPool.from_audiofolder(root)
    scorer = Scorer(heads, ModelInfo("random-heads", encoder_id=encoder.encoder_id), encoder)
    start = time.perf_counter()
    pool.start_scoring(scorer, cache_dir=None)
    pool.wait_scored()
    seconds = time.perf_counter() - start
    pool.stop_scoring()
    progress = pool.scoring_progress()
    if progress["scored"] != clips:
        raise RuntimeError(f"pool scoring left clips unscored: {progress}, {pool.score_errors}")
    return {
        "pool_clips": clips,
        "pool_clips_per_s": round(clips / seconds, 4),
        "pool_audio_s_per_s": round(clips * SEGMENT_S / seconds, 3),
        "pool_seconds": round(seconds, 1),
    }


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def score_gap(heads: ReferenceHeads, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Largest |score(a) - score(b)| on the engagement (0-100) and aesthetic (1-5) scales."""
    with torch.no_grad():
        sa, sb = heads(a[None]), heads(b[None])
    gaps = {name: float((sa[name] - sb[name]).abs().max()) for name in sa}
    return {
        "max_diff_0_100": max(gaps[n] for n in ENGAGEMENT),
        "max_diff_1_5": max(gaps[n] for n in AESTHETICS),
        "scores_reference": {n: round(float(v), 4) for n, v in sa.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="input length, seconds")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="segments per forward (fast; default: 1 on "
        "CPU, 4 on CUDA)",
    )  # fmt: skip
    parser.add_argument("--skip-autocast", action="store_true", help="skip variant (c)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument(
        "--pool-clips", type=int, default=40, help="30 s clips through the pool's queue (0: skip)"
    )
    args = parser.parse_args()
    from transformers import Wav2Vec2FeatureExtractor

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    load_start = os.getloadavg()[0]
    audio = synthetic_song(args.seconds)
    config = mert_95m_config()
    # MERT-v1-95M's preprocessor_config.json: zero-mean/unit-variance normalisation, 24 kHz,
    # attention mask returned (all ones for a single unpadded input).
    processor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
        return_attention_mask=True,
    )  # fmt: skip
    reference_model = build_hubert(config, seed=0).to(device)
    fast = MertEncoder(
        build_hubert(config, seed=0), encoder_id="random-mert-95m", precision="fast",
        device=device, batch_size=args.batch_size, do_normalize=processor.do_normalize,
    )  # fmt: skip
    warm = load_audio((audio.waveform[: SEGMENT_S * SAMPLE_RATE].numpy(), SAMPLE_RATE))
    paths = {
        "reference": lambda: reference_pipeline(reference_model, processor, audio.waveform),
        "fast": lambda: fast.encode(audio),
    }
    figures: dict[str, object] = {}
    if not args.skip_autocast and fast.compute_dtype == torch.bfloat16:
        autocast = MertEncoder(
            build_hubert(config, seed=0), encoder_id="x", precision="reference",
            do_normalize=True, batch_size=args.batch_size, device=device,
        )  # fmt: skip
        autocast.compute_dtype = torch.bfloat16  # fp32 weights, bf16 autocast, HF modules
        paths["autocast"] = lambda: autocast.encode(audio)
    reference_pipeline(reference_model, processor, warm.waveform)  # warm-up, not timed
    fast.encode(warm)
    # The machine is shared: the paths take turns, round by round (order alternating), and
    # each keeps its best round, so a burst of load elsewhere does not land on one path only.
    best: dict[str, float] = {}
    outputs: dict[str, object] = {}
    for round_ in range(args.rounds):
        for name in list(paths)[:: 1 if round_ % 2 == 0 else -1]:
            outputs[name], seconds = timed(paths[name])
            best[name] = min(best.get(name, math.inf), seconds)
    ref_layers, ref_s = outputs["reference"], best["reference"]
    fast_emb, fast_s = outputs["fast"], best["fast"]
    if "autocast" in paths:
        auto_emb, auto_s = outputs["autocast"], best["autocast"]
        figures["autocast_audio_s_per_s"] = round(args.seconds / auto_s, 3)
        figures["autocast_max_diff_0_100"] = None  # filled below
    torch.manual_seed(1)
    heads = ReferenceHeads(task="full", shared=2).eval()
    gap = score_gap(heads, ref_layers, fast_emb.layers_padded)
    if "autocast_audio_s_per_s" in figures:
        auto_gap = score_gap(heads, ref_layers, auto_emb.layers_padded)
        figures["autocast_max_diff_0_100"] = round(auto_gap["max_diff_0_100"], 5)
        figures["autocast_max_diff_1_5"] = round(auto_gap["max_diff_1_5"], 6)
    if args.pool_clips > 0:
        with tempfile.TemporaryDirectory(prefix="apex-pool-speed-") as tmp:
            pool_figures = pool_throughput(fast, heads, args.pool_clips, Path(tmp))
        pool_figures["pool_share_of_fast"] = round(
            pool_figures["pool_audio_s_per_s"] / (args.seconds / fast_s), 3
        )
        figures.update(pool_figures)
    segments = math.ceil(audio.waveform.shape[0] / (SEGMENT_S * SAMPLE_RATE))
    flops = segments * encoder_flops(config, SEGMENT_S * SAMPLE_RATE)
    peak_fp32, peak_bf16 = (matmul_gflops(t, device) for t in (torch.float32, torch.bfloat16))
    fast_peak = {torch.float32: peak_fp32, torch.bfloat16: peak_bf16}.get(fast.compute_dtype)
    if fast_peak is None:  # fp16 on a CUDA GPU without bf16
        fast_peak = matmul_gflops(fast.compute_dtype, device)
    figures = {
        "benchmark": "score_speed",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "audio_s": args.seconds,
        "segments": segments,
        "batch_size": fast.batch_size,
        "rounds": args.rounds,
        "fast_dtype": str(fast.compute_dtype).removeprefix("torch."),
        "reference_audio_s_per_s": round(args.seconds / ref_s, 3),
        "fast_audio_s_per_s": round(args.seconds / fast_s, 3),
        "speedup": round(ref_s / fast_s, 3),
        "max_diff_0_100": round(gap["max_diff_0_100"], 5),
        "max_diff_1_5": round(gap["max_diff_1_5"], 6),
        "embedding_max_rel_err": round(
            float(
                ((fast_emb.layers_padded - ref_layers).norm(dim=-1) / ref_layers.norm(dim=-1)).max()
            ),
            5,
        ),
        "encoder_gflop_per_segment": round(flops / segments / 1e9, 1),
        "reference_gflops": round(flops / ref_s / 1e9, 1),
        "fast_gflops": round(flops / fast_s / 1e9, 1),
        "peak_fp32_gflops": round(peak_fp32, 1),
        "peak_bf16_gflops": round(peak_bf16, 1) if peak_bf16 else None,
        "reference_share_of_fp32_peak": round(flops / ref_s / 1e9 / peak_fp32, 3),
        "fast_share_of_peak": round(flops / fast_s / 1e9 / fast_peak, 3),
        **figures,
        "targets_met": ref_s / fast_s >= 2.5
        and flops / fast_s / 1e9 / fast_peak >= 0.8
        and figures.get("pool_share_of_fast", 1.0) >= 0.8
        and gap["max_diff_0_100"] <= 0.5
        and gap["max_diff_1_5"] <= 0.05,
        "load_avg_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "random_head_scores": gap["scores_reference"],
    }
    print(f"reference shape : {figures['reference_audio_s_per_s']} s audio / s")
    print(f"fast path       : {figures['fast_audio_s_per_s']} s audio / s")
    print(f"speed-up        : {figures['speedup']}x (target >= 2.5x)")
    print(f"max |diff|      : {figures['max_diff_0_100']} (0-100), {figures['max_diff_1_5']} (1-5)")
    bf16 = f"{peak_bf16:.0f} GFLOP/s" if peak_bf16 else "none (no native bf16)"
    print(f"matmul peak     : fp32 {peak_fp32:.0f} GFLOP/s, bf16 {bf16}")
    print(
        f"encoder reaches : {figures['reference_share_of_fp32_peak']:.0%} of fp32 peak "
        f"(reference), {figures['fast_share_of_peak']:.0%} of {figures['fast_dtype']} peak (fast)"
    )
    if "pool_clips" in figures:
        print(
            f"pool scoring    : {figures['pool_clips_per_s']} clips/s, "
            f"{figures['pool_audio_s_per_s']} s audio / s, {figures['pool_share_of_fast']:.0%} of "
            f"the fast path ({figures['pool_clips']} x {SEGMENT_S} s clips; target >= 80%)"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

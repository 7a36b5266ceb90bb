"""Time-structure descriptors of the fallback encoder: rhythm and phrase repetition.

From frames of :mod:`apex.encoders.descriptors`: tempo, pulse clarity and grid coherence from
the log-mel onset envelope; how strongly 2 s chroma/MFCC phrases repeat 2.5 s or more apart.
"""

from __future__ import annotations

import math

import torch

from apex.encoders.descriptors import EPS


def _beat_period(envelope: torch.Tensor, fps: float) -> tuple[float, float]:
    """Strongest autocorrelation lag (frames) between 50 and 200 BPM, and its height re lag 0."""
    centred = envelope - envelope.mean()
    n = centred.numel()
    low, high = int(fps * 60 / 200), int(fps * 60 / 50)
    if n <= low + 2:
        return float("nan"), 0.0
    spectrum_ = torch.fft.rfft(centred, n=2 * n)
    ac = torch.fft.irfft(spectrum_.abs().square(), n=2 * n)[:n]
    window = ac[low : min(high, n - 1) + 1]
    lag = int(window.argmax()) + low
    return float(lag), float(ac[lag] / (ac[0] + EPS))


def rhythm(logmel_db: torch.Tensor, fps: float) -> torch.Tensor:
    """Onset strength, tempo, pulse clarity, tempo instability, onset rate, grid coherence."""
    envelope = torch.relu(logmel_db.diff(dim=1)).mean(dim=0)  # spectral flux, dB per frame
    if envelope.numel() < 4:
        return torch.zeros(8)
    lag, clarity = _beat_period(envelope, fps)
    # A beat period needs a few beats of context: only windows of 3 s or more are used.
    local = [_beat_period(c, fps)[0] for c in envelope.chunk(4) if c.numel() >= 3 * fps]
    spread = torch.tensor(local)
    instability = float(spread.std(unbiased=False) / spread.mean()) if len(local) > 1 else 0.0
    threshold = envelope.mean() + 0.5 * envelope.std(unbiased=False)
    inner = envelope[1:-1]
    peaks = (inner > envelope[:-2]) & (inner >= envelope[2:]) & (inner > threshold)
    rate = float(peaks.sum()) / (envelope.numel() / fps)
    coherence = 0.0
    if math.isfinite(lag):
        # Phase locking of the onset envelope to the beat and half-beat grid: 1 = on the grid.
        t = torch.arange(envelope.numel(), dtype=torch.float64)
        for period in (lag, lag / 2):
            phasor = (envelope.double() * torch.exp(2j * math.pi * t / period)).sum().abs()
            coherence = max(coherence, float(phasor / (envelope.sum() + EPS)))
    tempo = 60.0 * fps / lag / 100.0 if math.isfinite(lag) else 0.0
    values = [envelope.mean(), envelope.std(unbiased=False), envelope.max()]
    values += [tempo, clarity, instability, rate, coherence]
    return torch.tensor([float(v) for v in values])


def _blocks(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Average ``[K, N]`` over consecutive blocks of ``size`` frames -> ``[B, K]``."""
    count = frames.shape[1] // size
    if count == 0:
        return frames.mean(dim=1, keepdim=True).T
    return frames[:, : count * size].reshape(frames.shape[0], count, size).mean(dim=2).T


def _best_match(features: torch.Tensor, min_lag: int) -> tuple[float, float]:
    """Mean best cosine match at least ``min_lag`` blocks away, and mean off-diagonal similarity."""
    unit = features / (features.norm(dim=1, keepdim=True) + EPS)
    similarity = unit @ unit.T
    n = similarity.shape[0]
    if n < 2:
        return 0.0, 0.0
    index = torch.arange(n)
    distance = (index[:, None] - index[None, :]).abs()
    off_diagonal = similarity[distance > 0].mean()
    far = similarity.masked_fill(distance < min_lag, -1.0).max(dim=1).values
    far = far[far > -1.0]
    return (float(far.mean()) if far.numel() else 0.0), float(off_diagonal)


def _delay_embed(blocks: torch.Tensor, span: int) -> torch.Tensor:
    """Stack ``span`` consecutive ``[B, K]`` blocks -> ``[B - span + 1, span * K]`` (a phrase)."""
    if blocks.shape[0] <= span:
        return blocks.reshape(1, -1)
    return blocks.unfold(0, span, 1).reshape(blocks.shape[0] - span + 1, -1)


def repetition(chroma_frames: torch.Tensor, mfcc_frames: torch.Tensor, fps: float) -> torch.Tensor:
    """Self-similarity of 2 s phrases (0.125 s chroma / timbre blocks) at lags of 2.5 s or more
    (whole phrases: only a repeat, not new melody over the same chords, matches in order)."""
    size, span, min_lag = max(1, round(0.125 * fps)), 16, 20  # 16 x 0.125 s; 20 x 0.125 s
    chroma_blocks = _blocks(chroma_frames, size)
    timbre = _blocks(mfcc_frames[1:], size)  # MFCC 0 is loudness, not timbre
    timbre = (timbre - timbre.mean(dim=0)) / (timbre.std(dim=0, unbiased=False) + 1e-6)
    chroma_blocks = chroma_blocks - chroma_blocks.mean(dim=0)
    repeat_chroma, similarity = _best_match(_delay_embed(chroma_blocks, span), min_lag)
    repeat_timbre, _ = _best_match(_delay_embed(timbre, span), min_lag)
    return torch.tensor([repeat_chroma, repeat_timbre, similarity])

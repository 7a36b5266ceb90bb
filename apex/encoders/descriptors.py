"""The descriptor groups of the fallback encoder (:mod:`apex.encoders.fallback`), all from one
shared float32 STFT ``[N, F]`` (frames x bins); sample-rate constants built once in :class:`Banks`.
Sorting uses numpy (about 20x faster than ``torch.sort`` on CPU for these short rows)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

N_FFT, HOP, N_MELS, N_MFCC = 2048, 256, 32, 20
EPS = 1e-10
_CONTRAST_EDGES = (0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12000.0)
# Krumhansl-Kessler key profiles (C major, C minor), rotated to every tonic in Banks.
_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
# BS.1770 as torchaudio.functional.loudness: 400 ms blocks every 100 ms, gates at -70 LUFS and
# 10 LU below the absolute-gated mean, -0.691 dB bias.
_GATE_S, _STEP_S, _ABS_GATE, _REL_GATE, _K_BIAS = 0.4, 0.1, -70.0, -10.0, -0.691


def _bins(freqs: torch.Tensor, low: float, high: float, *, closed: bool = False) -> slice:
    """The contiguous bins with ``low <= f < high`` (``<= high`` if ``closed``) as a slice."""
    start = int(torch.searchsorted(freqs, torch.tensor(low, dtype=freqs.dtype)))
    stop = int(torch.searchsorted(freqs, torch.tensor(high, dtype=freqs.dtype), right=closed))
    return slice(start, stop)


@dataclass(frozen=True)
class Banks:
    """Everything the descriptors need that depends only on the sample rate (Hz)."""

    sample_rate: int
    window: torch.Tensor  # [N_FFT] periodic Hann
    freqs: torch.Tensor  # [F] bin centres, Hz (F = N_FFT // 2 + 1)
    mel: torch.Tensor  # [F, N_MELS] Slaney mel filterbank, 30 Hz-11 kHz
    dct: torch.Tensor  # [N_MELS, N_MFCC] orthonormal DCT-II
    chroma: torch.Tensor  # [F, 12] one-hot pitch class of each bin in 55 Hz-5 kHz (else 0)
    moments: torch.Tensor  # [F, 3] columns 1, f, f^2 with f in kHz (centroid, bandwidth)
    keys: torch.Tensor  # [24, 12] key profiles, each centred and scaled to unit (unbiased) std
    kweight: torch.Tensor  # [F] BS.1770 energy weight of each bin (_kweight)
    contrast: tuple[slice, ...]  # bins of the 7 octave bands of spectral contrast
    above_4k: slice
    above_8k: slice
    pitch: slice  # 150-2500 Hz (dominant partial for vibrato)

    @classmethod
    def build(cls, sample_rate: int) -> Banks:
        import torchaudio.functional as taf

        n_bins = N_FFT // 2 + 1
        freqs = torch.linspace(0.0, sample_rate / 2, n_bins, dtype=torch.float64)
        mel = taf.melscale_fbanks(n_bins, 30.0, 11000.0, N_MELS, sample_rate, norm="slaney")
        dct = taf.create_dct(N_MFCC, N_MELS, norm="ortho")
        chroma_bins = _bins(freqs, 55.0, 5000.0, closed=True)
        pitch_class = (torch.round(12 * torch.log2(freqs[chroma_bins] / 440.0)) + 69).long() % 12
        chroma = torch.zeros(n_bins, 12, dtype=torch.float64)
        chroma[torch.arange(n_bins)[chroma_bins], pitch_class] = 1.0
        khz = freqs / 1000.0
        profiles = torch.tensor([_MAJOR, _MINOR], dtype=torch.float64)
        keys = torch.stack([profiles.roll(k, dims=1) for k in range(12)]).reshape(24, 12)
        keys = (keys - keys.mean(dim=1, keepdim=True)) / keys.std(dim=1, keepdim=True)
        return cls(
            sample_rate=sample_rate,
            window=torch.hann_window(N_FFT, dtype=torch.float32),
            freqs=freqs.to(torch.float32),
            mel=mel.to(torch.float32).contiguous(),
            dct=dct.to(torch.float32).contiguous(),
            chroma=chroma.to(torch.float32),
            moments=torch.stack([torch.ones_like(khz), khz, khz.square()], dim=1).float(),
            keys=keys.to(torch.float32),
            kweight=_kweight(sample_rate, n_bins).to(torch.float32),
            contrast=tuple(_bins(freqs, a, b) for a, b in itertools.pairwise(_CONTRAST_EDGES)),
            above_4k=_bins(freqs, 4000.0, math.inf),
            above_8k=_bins(freqs, 8000.0, math.inf),
            pitch=_bins(freqs, 150.0, 2500.0, closed=True),
        )


def _kweight(sample_rate: int, n_bins: int) -> torch.Tensor:
    """``[F]``: K-weighted energy per unit of ``|X_k|^2`` for a Hann STFT at hop ``N_FFT / 8``:
    torchaudio's K-weighting read off a 2^16 sample impulse response; one-sided Parseval counts
    inner bins twice; a squared periodic Hann window at hop N/8 overlap-adds to exactly 3."""
    import torchaudio.functional as taf

    length = 1 << 16
    impulse = torch.zeros(1, length, dtype=torch.float64)
    impulse[0, 0] = 1e-3  # small: the biquads clamp their output to [-1, 1]
    response = taf.treble_biquad(impulse, sample_rate, 4.0, 1500.0, 1 / math.sqrt(2))
    response = taf.highpass_biquad(response, sample_rate, 38.0, 0.5)[0] / 1e-3
    gain = torch.fft.rfft(response).abs().square()[:: length // N_FFT][:n_bins]
    sides = torch.full((n_bins,), 2.0, dtype=torch.float64)
    sides[0] = sides[-1] = 1.0
    overlap = (torch.hann_window(N_FFT, dtype=torch.float64).square().sum() / HOP).item()
    return gain * sides / N_FFT / overlap


def db(x: torch.Tensor) -> torch.Tensor:
    """Power ratio to decibels, floored at -100 dB."""
    return 10.0 * torch.log10(x + EPS)


def stats(frames: torch.Tensor) -> torch.Tensor:
    """Mean then std over time of ``[K, N]`` -> ``[2K]``."""
    return torch.cat([frames.mean(dim=1), frames.std(dim=1, unbiased=False)])


def _entropy(p: torch.Tensor, dim: int = 0) -> torch.Tensor:
    p = p / (p.sum(dim=dim, keepdim=True) + EPS)
    return -(p * torch.log2(p + EPS)).sum(dim=dim)


def harmony(chroma_frames: torch.Tensor, banks: Banks) -> torch.Tensor:
    """``[16]``: mean chroma sorted high to low (key-independent); key clarity (best correlation
    with the 24 Krumhansl-Kessler key profiles); entropy of the mean chroma and mean frame
    entropy (bits); mean share of each frame's chroma in its top 3 classes."""
    mean = chroma_frames.mean(dim=1)
    centred = (mean - mean.mean()) / (mean.std() + EPS)
    # Pearson correlation with each key profile (unbiased std, hence the 11 = 12 - 1).
    clarity = (banks.keys @ centred).max() / 11.0
    top3 = chroma_frames.topk(3, dim=0).values.sum(dim=0).mean()
    scalars = torch.stack([clarity, _entropy(mean), _entropy(chroma_frames).mean(), top3])
    return torch.cat([mean.sort(descending=True).values, scalars])


def contrast(power: torch.Tensor, banks: Banks) -> torch.Tensor:
    """``[7, N]`` peak-to-valley contrast (dB): top vs bottom fifth of each octave band."""
    array = power.numpy()
    peaks, valleys = [], []
    for band in banks.contrast:
        ordered = np.sort(array[:, band], axis=1)
        k = max(1, round(0.2 * ordered.shape[1]))
        peaks.append(ordered[:, -k:].mean(axis=1))
        valleys.append(ordered[:, :k].mean(axis=1))
    return db(torch.from_numpy(np.stack(peaks))) - db(torch.from_numpy(np.stack(valleys)))


def shape(power: torch.Tensor, wave: torch.Tensor, banks: Banks) -> torch.Tensor:
    """``[13]``: flatness mean/std, flatness above 4 kHz; centroid mean/std, 85 % rolloff
    mean/std, 95 % rolloff, bandwidth (kHz); energy above 4 and 8 kHz re total (dB);
    zero-crossing rate mean/std (per sample)."""
    log_power = torch.log(power + EPS)
    flatness = torch.exp(log_power.mean(dim=1)) / (power.mean(dim=1) + EPS)
    high = banks.above_4k
    flat_hf = torch.exp(log_power[:, high].mean(dim=1)) / (power[:, high].mean(dim=1) + EPS)
    moments = power @ banks.moments  # [N, 3]: energy, energy x kHz, energy x kHz^2
    total = moments[:, 0] + EPS
    centroid = moments[:, 1] / total
    spread = moments[:, 2] / total - 2 * centroid * moments[:, 1] / total
    bandwidth = (spread + centroid.square() * moments[:, 0] / total).clamp(min=0.0).sqrt()
    cumulative = power.cumsum(dim=1)
    khz = banks.freqs / 1000.0

    def rolloff(share: float) -> torch.Tensor:
        # Bins whose cumulative energy is below the share: first index reaching it.
        index = torch.searchsorted(cumulative, (share * total)[:, None].contiguous())[:, 0]
        return khz[index.clamp(max=len(khz) - 1)]

    r85 = rolloff(0.85)
    energy = moments[:, 0].sum()
    signs = torch.sign(wave)
    crossings = (signs[1:] != signs[:-1]).to(torch.float32)
    zcr = crossings[: crossings.numel() // HOP * HOP].reshape(-1, HOP).mean(dim=1)
    zcr = zcr if zcr.numel() else crossings.mean().reshape(1)
    return torch.stack([
        flatness.mean(), flatness.std(unbiased=False), flat_hf.mean(), centroid.mean(),
        centroid.std(unbiased=False), r85.mean(), r85.std(unbiased=False),
        rolloff(0.95).mean(), bandwidth.mean(),
        db(power[:, high].sum() / (energy + EPS)),
        db(power[:, banks.above_8k].sum() / (energy + EPS)),
        zcr.mean(), zcr.std(unbiased=False),
    ])  # fmt: skip


def loudness(power: torch.Tensor, samples: int, banks: Banks) -> float:
    """BS.1770 integrated loudness (LUFS, floored at -70) from the STFT power ``[N, F]``:
    ``torchaudio.functional.loudness``'s gating on each 400 ms block's K-weighted energy read
    from the spectrum (within a few hundredths of a LU of filtering the samples, far cheaper)."""
    gate = round(_GATE_S * banks.sample_rate)
    step = round(gate * _STEP_S / _GATE_S)
    if samples < gate:  # shorter than one gating block
        return _ABS_GATE
    frame_energy = (power @ banks.kweight).double()  # K-weighted energy near each frame centre
    edges = (torch.arange(frame_energy.numel() + 1, dtype=torch.float64) - 0.5) * HOP
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), frame_energy.cumsum(0)])
    starts = torch.arange((samples - gate) // step + 1, dtype=torch.float64) * step
    at = np.interp(torch.cat([starts, starts + gate]).numpy(), edges.numpy(), cumulative.numpy())
    block = torch.from_numpy(at[starts.numel() :] - at[: starts.numel()]) / gate  # mean square
    block_lufs = _K_BIAS + 10 * torch.log10(block)
    kept = block_lufs > _ABS_GATE
    if not kept.any():
        return _ABS_GATE
    relative = _K_BIAS + 10 * math.log10(float(block[kept].mean())) + _REL_GATE
    kept &= block_lufs > relative
    return max(_K_BIAS + 10 * math.log10(float(block[kept].mean())), _ABS_GATE)


def dynamics(wave: torch.Tensor, power: torch.Tensor, banks: Banks) -> torch.Tensor:
    """``[12]``: loudness (LUFS); frame RMS mean/std/5th/95th pct, dynamic range (95th - 5th),
    crest factor (dB); share of samples above 50, 80, 95 % of the peak; log kurtosis; peak
    (dBFS)."""
    frames = wave[: wave.numel() // HOP * HOP].reshape(-1, HOP)
    rms_db = db(frames.square().mean(dim=1))
    quantiles = torch.quantile(rms_db, torch.tensor([0.05, 0.95]))
    magnitude = wave.abs()
    peak = magnitude.max()
    rms = wave.square().mean().sqrt()
    # Clipping flattens waveform tops: many samples sit near the peak and the distribution's
    # tails vanish (low kurtosis), whatever gain was applied after the clipper.
    share = [float((magnitude > f * peak).sum()) / wave.numel() for f in (0.5, 0.8, 0.95)]
    centred = wave - wave.mean()
    variance = centred.square().mean()
    kurtosis = centred.square().square().mean() / (variance.square() + EPS)
    values = [loudness(power, wave.numel(), banks), rms_db.mean(), rms_db.std(unbiased=False)]
    values += [quantiles[0], quantiles[1], quantiles[1] - quantiles[0]]
    values += [20 * torch.log10((peak + EPS) / (rms + EPS)), *share]
    values += [torch.log(kurtosis + EPS), 20 * torch.log10(peak + EPS)]
    return torch.tensor([float(v) for v in values])


def noise(power: torch.Tensor, banks: Banks) -> torch.Tensor:
    """``[3]`` (dB): 10th-percentile frame level re the median; minimum-statistics noise floor
    above 4 kHz re the median frame level; 10th-percentile frame level."""
    frame_db = db(power.mean(dim=1))
    q10, q50 = torch.quantile(frame_db, torch.tensor([0.1, 0.5]))
    # A steady noise floor keeps high bins busy between notes, raising their 10th percentile over
    # time; music alone leaves them nearly empty. Relative to the median level (gain-free).
    high = np.sort(power[:, banks.above_4k].T.contiguous().numpy(), axis=1)
    position = 0.1 * (high.shape[1] - 1)
    below, frac = math.floor(position), position - math.floor(position)
    lower = db(torch.from_numpy(high[:, below]))
    upper = db(torch.from_numpy(high[:, min(below + 1, high.shape[1] - 1)]))
    hf_floor = (lower + frac * (upper - lower)).mean() - q50
    return torch.stack([q10 - q50, hf_floor, q10])


def expression(spec: torch.Tensor, power: torch.Tensor, banks: Banks) -> torch.Tensor:
    """``[3]``: frame-to-frame pitch movement of the dominant partial (150-2500 Hz, from the phase
    advance, finer than the bins), RMS and median (cents per frame), share steadier than 3 cents:
    vibrato moves tens of cents per frame, a robotic note not at all."""
    band = banks.pitch
    if spec.shape[0] < 3 or band.stop <= band.start:
        return torch.zeros(3)
    strength, which = power[:, band].max(dim=1)
    bins = which + band.start  # [N]
    frames = torch.arange(spec.shape[0])
    phase = torch.angle(spec[frames[1:], bins[1:]]) - torch.angle(spec[frames[:-1], bins[1:]])
    expected = 2 * math.pi * bins[1:].to(torch.float32) * HOP / N_FFT
    deviation = torch.remainder(phase - expected + math.pi, 2 * math.pi) - math.pi
    hz = (bins[1:] + deviation * N_FFT / (2 * math.pi * HOP)) * banks.sample_rate / N_FFT
    cents = 1200 * torch.log2(hz.clamp(min=20.0) / 440.0)
    step = cents.diff().abs()
    # Only steps within one held partial count: same or neighbouring bin, strong frames.
    same = (bins[2:] - bins[1:-1]).abs() <= 1
    loud = strength[2:] >= strength.median()
    moves = step[same & loud & (step < 100.0)]
    if moves.numel() == 0:
        return torch.zeros(3)
    steady = (moves < 3.0).to(torch.float32).mean()
    return torch.stack([moves.square().mean().sqrt(), moves.median(), steady])


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
    """``[8]``: onset strength mean/std/max; tempo (BPM / 100); pulse clarity (autocorrelation
    peak re lag 0); tempo instability (relative spread of the beat period across 4 windows);
    onsets per second; grid coherence (phase locking of onsets to the beat, 0-1)."""
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
    """``[3]``: chroma and timbre self-similarity of 2 s phrases (0.125 s blocks), the mean best
    match (cosine) at least 2.5 s away; mean off-diagonal chroma similarity. Whole phrases: only
    a repeat, not new melody over the same chords, matches in order."""
    size, span, min_lag = max(1, round(0.125 * fps)), 16, 20  # 16 x 0.125 s; 20 x 0.125 s
    chroma_blocks = _blocks(chroma_frames, size)
    timbre = _blocks(mfcc_frames[1:], size)  # MFCC 0 is loudness, not timbre
    timbre = (timbre - timbre.mean(dim=0)) / (timbre.std(dim=0, unbiased=False) + 1e-6)
    chroma_blocks = chroma_blocks - chroma_blocks.mean(dim=0)
    repeat_chroma, similarity = _best_match(_delay_embed(chroma_blocks, span), min_lag)
    repeat_timbre, _ = _best_match(_delay_embed(timbre, span), min_lag)
    return torch.tensor([repeat_chroma, repeat_timbre, similarity])


def vector(wave: torch.Tensor, banks: Banks) -> torch.Tensor:
    """Every group of ``[T]`` float32 samples at ``banks.sample_rate``, concatenated: ``[176]``
    float32 (:data:`apex.encoders.fallback.FALLBACK_FEATURES`)."""
    if wave.numel() < N_FFT:
        wave = torch.nn.functional.pad(wave, (0, N_FFT - wave.numel()))
    spec = torch.stft(
        wave, N_FFT, HOP, window=banks.window, center=True, pad_mode="constant",
        return_complex=True,
    ).T  # fmt: skip
    power = torch.addcmul(spec.real.square(), spec.imag, spec.imag)  # [N, F]
    fps = banks.sample_rate / HOP
    logmel = db(power @ banks.mel).T  # [M, N]: 32 bands, 30 Hz-11 kHz (dB)
    mfcc = banks.dct.T @ logmel  # [C, N]: MFCC 0-19
    energy = (power @ banks.chroma).T  # [12, N]: pitch-class energy, 55 Hz-5 kHz
    chroma = energy / (energy.sum(dim=0, keepdim=True) + EPS)
    parts = [
        stats(logmel),
        stats(mfcc),
        harmony(chroma, banks),
        stats(contrast(power, banks)),
        shape(power, wave, banks),
        rhythm(logmel, fps),
        dynamics(wave, power, banks),
        noise(power, banks),
        repetition(chroma, mfcc, fps),
        expression(spec, power, banks),
    ]
    out = torch.cat([p.reshape(-1).to(torch.float32) for p in parts])
    # Degenerate input (silence, a few samples) can give NaN statistics; zeros keep heads finite.
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

"""The fallback encoder: a fixed vector of music descriptors per 30 s segment, no weights needed.

It exists so that the product works offline (no MERT weights): the demo heads are trained on
these descriptors, and the UI and CLI say plainly when it is in use (``is_fallback``). Everything
is computed with torch/torchaudio in float64 on the real (unpadded) samples of each segment, from
one STFT (2048-point Hann window, hop 256 = 10.7 ms at 24 kHz), so the output is deterministic.
``layers`` and ``layers_padded`` are identical (padding never enters the computation); ``L = 1``.

The vector (:data:`FALLBACK_FEATURES` names every entry, ``FALLBACK_DIM = 176``):

====  ============================  =============================================================
n     group                         entries (units)
====  ============================  =============================================================
64    log-mel                       mean and std over time of 32 log-mel bands, 30 Hz-11 kHz (dB)
40    MFCC                          mean and std of MFCC 0-19 (DCT-II of the log-mel, dB)
16    chroma / harmony              mean chroma sorted high to low (key-independent); key
                                    clarity (best correlation with the 24 Krumhansl-Kessler key
                                    profiles); entropy of the mean chroma and mean frame entropy
                                    (bits); share of each frame's chroma in its top 3 classes
14    spectral contrast             mean and std of peak-to-valley contrast in 7 octave bands (dB)
13    spectral shape                flatness mean/std; flatness above 4 kHz; centroid, 85 %
                                    rolloff mean/std (kHz); 95 % rolloff (kHz); bandwidth (kHz);
                                    energy above 4 kHz and 8 kHz re total (dB); zero-crossing
                                    rate mean/std (per sample)
8     onsets and tempo              onset strength mean/std/max; tempo (BPM / 100); pulse clarity
                                    (autocorrelation peak re lag 0); tempo instability (relative
                                    spread of the beat period across 4 windows); onsets per second;
                                    grid coherence (phase locking of onsets to the beat, 0-1)
7     loudness and dynamics         BS.1770 loudness (LUFS); frame RMS mean/std/5th/95th pct (dB);
                                    dynamic range (95th - 5th pct, dB); crest factor (dB)
5     clipping                      share of samples above 50 %, 80 %, 95 % of the peak; log
                                    kurtosis; peak level (dBFS)
3     noise                         quiet-frame level re median (dB); minimum-statistics noise
                                    floor above 4 kHz re the median frame level (dB); 10th pct
                                    frame level (dB)
3     repetition                    chroma and timbre self-similarity: mean best match at least
                                    2.5 s away (cosine), mean off-diagonal chroma similarity
3     expression (vibrato)          frame-to-frame pitch movement of the dominant partial
                                    (phase-vocoder frequency, 150-2500 Hz): RMS and median (cents
                                    per 10.7 ms frame), share of frames steadier than 3 cents
====  ============================  =============================================================

These cover what the demo corpus varies (harmony, rhythm regularity, noise, clipping, low-pass,
repetition, vibrato) and the usual music-information-retrieval summaries.
"""

from __future__ import annotations

import itertools
import math

import torch

from apex.audio import SAMPLE_RATE, Audio
from apex.encoders.base import SEGMENT_SECONDS, Embedding, Encoder, split_segments

_VERSION = 1  # bump whenever a descriptor changes: cached embeddings and demo heads then rebuild
_N_FFT, _HOP, _N_MELS, _N_MFCC = 2048, 256, 32, 20
_EPS = 1e-10
_CONTRAST_EDGES = (0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12000.0)
# Krumhansl-Kessler key profiles (C major, C minor), rotated to every tonic at run time.
_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


def _names() -> tuple[str, ...]:
    names = [f"logmel{i}_{s}" for s in ("mean", "std") for i in range(_N_MELS)]
    names += [f"mfcc{i}_{s}" for s in ("mean", "std") for i in range(_N_MFCC)]
    names += [f"chroma_sorted{i}" for i in range(12)]
    names += ["key_clarity", "chroma_entropy", "chroma_frame_entropy", "chroma_top3"]
    names += [f"contrast{i}_{s}" for s in ("mean", "std") for i in range(7)]
    names += ["flatness_mean", "flatness_std", "flatness_hf", "centroid_mean", "centroid_std"]
    names += ["rolloff85_mean", "rolloff85_std", "rolloff95_mean", "bandwidth_mean"]
    names += ["energy_above_4k", "energy_above_8k", "zcr_mean", "zcr_std"]
    names += ["onset_mean", "onset_std", "onset_max", "tempo", "pulse_clarity"]
    names += ["tempo_instability", "onset_rate", "grid_coherence"]
    names += ["loudness_lufs", "rms_mean", "rms_std", "rms_p5", "rms_p95", "dynamic_range"]
    names += ["crest_factor", "clip_above_50", "clip_above_80", "clip_above_95", "log_kurtosis"]
    names += ["peak_dbfs", "quiet_re_median", "hf_noise_floor", "rms_p10"]
    names += ["repetition_chroma", "repetition_timbre", "chroma_similarity"]
    names += ["pitch_wobble_rms", "pitch_wobble_median", "pitch_steady_share"]
    return tuple(names)


FALLBACK_FEATURES: tuple[str, ...] = _names()
"""Name of every entry of the descriptor vector, in order."""
FALLBACK_DIM = len(FALLBACK_FEATURES)
"""D of the fallback encoder (176)."""


class FallbackEncoder(Encoder):
    """Descriptor vector per 30 s segment: ``[S, 1, FALLBACK_DIM]``; no weights, deterministic."""

    encoder_id = "fallback"
    sample_rate = SAMPLE_RATE
    num_layers = 1
    dim = FALLBACK_DIM
    segment_seconds = SEGMENT_SECONDS
    is_fallback = True

    def settings_key(self) -> str:
        """Descriptor version and segment length."""
        return f"fallback-v{_VERSION}|seg{self.segment_seconds:g}s"

    def encode(self, audio: Audio) -> Embedding:
        """Describe each 30 s segment of ``audio`` (its real samples only)."""
        self._check_rate(audio)
        segment_samples = round(self.segment_seconds * self.sample_rate)
        segments, valid = split_segments(audio.waveform.to(torch.float64), segment_samples)
        vectors = [
            describe(segment[: max(int(n), 1)], self.sample_rate)
            for segment, n in zip(segments, valid, strict=True)
        ]
        layers = torch.stack(vectors)[:, None, :].to(torch.float32)
        return Embedding(
            layers=layers,
            layers_padded=layers.clone(),
            seconds=valid.to(torch.float32) / self.sample_rate,
            encoder_id=self.encoder_id,
        )


def describe(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The descriptor vector of one mono clip.

    Args:
        wave: ``[T]`` samples (any float dtype), at ``sample_rate`` Hz.
        sample_rate: Hz.

    Returns:
        ``[FALLBACK_DIM]`` float64, entries as named by :data:`FALLBACK_FEATURES`.
    """
    wave = wave.to(torch.float64)
    if wave.numel() < _N_FFT:
        wave = torch.nn.functional.pad(wave, (0, _N_FFT - wave.numel()))
    window = torch.hann_window(_N_FFT, dtype=torch.float64)
    stft = torch.stft(
        wave, _N_FFT, _HOP, window=window, center=True, pad_mode="constant", return_complex=True
    )  # [F, N]
    power = stft.abs().square()
    freqs = torch.linspace(0.0, sample_rate / 2, power.shape[0], dtype=torch.float64)
    fps = sample_rate / _HOP
    logmel = _logmel(power, sample_rate)
    chroma = _chroma(power, freqs)
    parts = [
        _stats(logmel),
        _stats(_mfcc(logmel)),
        _harmony(chroma),
        _stats(_contrast(power, freqs)),
        _shape(power, freqs, wave),
        _rhythm(logmel, fps),
        _dynamics(wave, sample_rate),
        _noise(power, freqs),
        _repetition(chroma, _mfcc(logmel), fps),
        _expression(stft, power, freqs, sample_rate),
    ]
    out = torch.cat([p.reshape(-1).to(torch.float64) for p in parts])
    # Degenerate input (silence, a few samples) can give NaN statistics; zeros keep heads finite.
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _stats(frames: torch.Tensor) -> torch.Tensor:
    """Mean then std over time of ``[K, N]`` -> ``[2K]``."""
    return torch.cat([frames.mean(dim=1), frames.std(dim=1, unbiased=False)])


def _db(x: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(x + _EPS)


def _logmel(power: torch.Tensor, sample_rate: int) -> torch.Tensor:
    import torchaudio.functional as taf

    bank = taf.melscale_fbanks(power.shape[0], 30.0, 11000.0, _N_MELS, sample_rate, norm="slaney")
    return _db(bank.to(torch.float64).T @ power)  # [M, N]


def _mfcc(logmel: torch.Tensor) -> torch.Tensor:
    import torchaudio.functional as taf

    dct = taf.create_dct(_N_MFCC, _N_MELS, norm="ortho").to(torch.float64)  # [M, C]
    return dct.T @ logmel  # [C, N]


def _chroma(power: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """``[12, N]`` chroma (pitch-class energy share per frame), from 55 Hz to 5 kHz."""
    band = (freqs >= 55.0) & (freqs <= 5000.0)
    pitch_class = (torch.round(12 * torch.log2(freqs[band] / 440.0)) + 69).long() % 12
    chroma = torch.zeros(12, power.shape[1], dtype=torch.float64)
    chroma.index_add_(0, pitch_class, power[band])
    return chroma / (chroma.sum(dim=0, keepdim=True) + _EPS)


def _entropy(p: torch.Tensor, dim: int = 0) -> torch.Tensor:
    p = p / (p.sum(dim=dim, keepdim=True) + _EPS)
    return -(p * torch.log2(p + _EPS)).sum(dim=dim)


def _harmony(chroma: torch.Tensor) -> torch.Tensor:
    mean = chroma.mean(dim=1)
    profiles = torch.tensor([_MAJOR, _MINOR], dtype=torch.float64)
    keys = torch.stack([profiles.roll(k, dims=1) for k in range(12)]).reshape(24, 12)

    def centred(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + _EPS)

    # Pearson correlation with each key profile (unbiased std, hence the 11 = 12 - 1).
    clarity = (centred(keys) * centred(mean[None])).sum(dim=1).max() / 11.0
    top3 = chroma.topk(3, dim=0).values.sum(dim=0).mean()
    scalars = torch.stack([clarity, _entropy(mean), _entropy(chroma).mean(), top3])
    return torch.cat([mean.sort(descending=True).values, scalars])


def _contrast(power: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """``[7, N]`` peak-to-valley contrast (dB): top vs bottom fifth of each octave band."""
    rows = []
    for low, high in itertools.pairwise(_CONTRAST_EDGES):
        band = power[(freqs >= low) & (freqs < high)].sort(dim=0).values
        k = max(1, round(0.2 * band.shape[0]))
        rows.append(_db(band[-k:].mean(dim=0)) - _db(band[:k].mean(dim=0)))
    return torch.stack(rows)


def _shape(power: torch.Tensor, freqs: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
    """Flatness, centroid, rolloff, bandwidth, high-band energy and zero-crossing rate."""
    flatness = torch.exp(torch.log(power + _EPS).mean(dim=0)) / (power.mean(dim=0) + _EPS)
    high = power[freqs >= 4000.0]
    flat_hf = (torch.exp(torch.log(high + _EPS).mean(dim=0)) / (high.mean(dim=0) + _EPS)).mean()
    total = power.sum(dim=0) + _EPS
    khz = freqs / 1000.0
    centroid = (khz[:, None] * power).sum(dim=0) / total
    bandwidth = (((khz[:, None] - centroid) ** 2 * power).sum(dim=0) / total).sqrt()
    cumulative = power.cumsum(dim=0) / total

    def rolloff(share: float) -> torch.Tensor:
        return khz[(cumulative < share).sum(dim=0).clamp(max=len(khz) - 1)]

    r85 = rolloff(0.85)
    energy = power.sum()
    signs = torch.sign(wave)
    crossings = (signs[1:] != signs[:-1]).to(torch.float64)
    zcr = crossings[: crossings.numel() // _HOP * _HOP].reshape(-1, _HOP).mean(dim=1)
    zcr = zcr if zcr.numel() else crossings.mean().reshape(1)
    return torch.stack([
        flatness.mean(), flatness.std(unbiased=False), flat_hf, centroid.mean(),
        centroid.std(unbiased=False), r85.mean(), r85.std(unbiased=False),
        rolloff(0.95).mean(), bandwidth.mean(),
        _db(power[freqs >= 4000.0].sum() / (energy + _EPS)),
        _db(power[freqs >= 8000.0].sum() / (energy + _EPS)),
        zcr.mean(), zcr.std(unbiased=False),
    ])  # fmt: skip


def _beat_period(envelope: torch.Tensor, fps: float) -> tuple[float, float]:
    """Strongest autocorrelation lag (frames) between 50 and 200 BPM, and its height re lag 0."""
    centred = envelope - envelope.mean()
    n = centred.numel()
    low, high = int(fps * 60 / 200), int(fps * 60 / 50)
    if n <= low + 2:
        return float("nan"), 0.0
    spectrum = torch.fft.rfft(centred, n=2 * n)
    ac = torch.fft.irfft(spectrum.abs().square(), n=2 * n)[:n]
    window = ac[low : min(high, n - 1) + 1]
    lag = int(window.argmax()) + low
    return float(lag), float(ac[lag] / (ac[0] + _EPS))


def _rhythm(logmel: torch.Tensor, fps: float) -> torch.Tensor:
    """Onset strength, tempo, pulse clarity, tempo instability, onset rate, grid coherence."""
    envelope = torch.relu(logmel.diff(dim=1)).mean(dim=0)  # spectral flux, dB per frame
    if envelope.numel() < 4:
        return torch.zeros(8, dtype=torch.float64)
    lag, clarity = _beat_period(envelope, fps)
    local = []
    for chunk in envelope.chunk(4):
        # A beat period needs a few beats of context: only windows of 3 s or more are used.
        if chunk.numel() >= 3 * fps:
            local.append(_beat_period(chunk, fps)[0])
    spread = torch.tensor(local, dtype=torch.float64)
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
            phasor = (envelope * torch.exp(2j * math.pi * t / period)).sum().abs()
            coherence = max(coherence, float(phasor / (envelope.sum() + _EPS)))
    tempo = 60.0 * fps / lag / 100.0 if math.isfinite(lag) else 0.0
    values = [envelope.mean(), envelope.std(unbiased=False), envelope.max()]
    values += [tempo, clarity, instability, rate, coherence]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def _dynamics(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Loudness, frame-RMS statistics, dynamic range, crest factor, clipping indicators."""
    import torchaudio.functional as taf

    frames = wave[: wave.numel() // _HOP * _HOP].reshape(-1, _HOP)
    rms_db = _db(frames.square().mean(dim=1))
    quantiles = torch.quantile(rms_db, torch.tensor([0.05, 0.95], dtype=torch.float64))
    try:
        lufs = float(taf.loudness(wave[None].to(torch.float32), sample_rate))
    except (RuntimeError, ValueError):  # shorter than the 400 ms gating block
        lufs = float("nan")
    lufs = max(lufs, -70.0) if math.isfinite(lufs) else -70.0
    peak = wave.abs().max()
    rms = wave.square().mean().sqrt()
    # Clipping flattens waveform tops: many samples sit near the peak and the distribution's
    # tails vanish (low kurtosis), whatever gain was applied after the clipper.
    share = [float((wave.abs() > f * peak).to(torch.float64).mean()) for f in (0.5, 0.8, 0.95)]
    kurtosis = (wave - wave.mean()).pow(4).mean() / (wave.var(unbiased=False).square() + _EPS)
    values = [lufs, rms_db.mean(), rms_db.std(unbiased=False), quantiles[0], quantiles[1]]
    values += [quantiles[1] - quantiles[0], 20 * torch.log10((peak + _EPS) / (rms + _EPS))]
    values += [*share, torch.log(kurtosis + _EPS), 20 * torch.log10(peak + _EPS)]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def _noise(power: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Quiet-frame level, high-band minimum-statistics noise floor, 10th-percentile level (dB)."""
    frame_db = _db(power.mean(dim=0))
    q10, q50 = torch.quantile(frame_db, torch.tensor([0.1, 0.5], dtype=torch.float64))
    # A steady noise floor keeps every high-frequency bin busy even between notes, so the
    # 10th percentile over time of those bins rises towards the music's level; music alone
    # leaves them nearly empty. Relative to the median frame level, so gain does not matter.
    high = _db(power[freqs >= 4000.0])
    hf_floor = torch.quantile(high, 0.1, dim=1).mean() - q50
    return torch.stack([q10 - q50, hf_floor, q10])


def _blocks(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Average ``[K, N]`` over consecutive blocks of ``size`` frames -> ``[B, K]``."""
    count = frames.shape[1] // size
    if count == 0:
        return frames.mean(dim=1, keepdim=True).T
    return frames[:, : count * size].reshape(frames.shape[0], count, size).mean(dim=2).T


def _best_match(features: torch.Tensor, min_lag: int) -> tuple[float, float]:
    """Mean best cosine match at least ``min_lag`` blocks away, and mean off-diagonal similarity."""
    unit = features / (features.norm(dim=1, keepdim=True) + _EPS)
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


def _repetition(chroma: torch.Tensor, mfcc: torch.Tensor, fps: float) -> torch.Tensor:
    """Self-similarity of 2 s phrases (0.125 s chroma / timbre blocks) at lags of 2.5 s or more.

    Matching whole phrases rather than single blocks is what tells a repeated section from a
    new one over the same chords: only a repeat brings the same melody in the same order.
    """
    size, span, min_lag = max(1, round(0.125 * fps)), 16, 20  # 16 x 0.125 s; 20 x 0.125 s
    chroma_blocks = _blocks(chroma, size)
    timbre = _blocks(mfcc[1:], size)  # MFCC 0 is loudness, not timbre
    timbre = (timbre - timbre.mean(dim=0)) / (timbre.std(dim=0, unbiased=False) + 1e-6)
    chroma_blocks = chroma_blocks - chroma_blocks.mean(dim=0)
    repeat_chroma, similarity = _best_match(_delay_embed(chroma_blocks, span), min_lag)
    repeat_timbre, _ = _best_match(_delay_embed(timbre, span), min_lag)
    return torch.tensor([repeat_chroma, repeat_timbre, similarity], dtype=torch.float64)


def _expression(
    stft: torch.Tensor, power: torch.Tensor, freqs: torch.Tensor, sample_rate: int
) -> torch.Tensor:
    """Frame-to-frame pitch movement (cents) of the dominant partial between 150 and 2500 Hz.

    Vibrato moves a held note's partials by tens of cents per frame; a robotic, flat note
    does not move at all. The frequency comes from the phase advance between frames (phase
    vocoder), which resolves far finer than the 11.7 Hz bin spacing.
    """
    band = torch.nonzero((freqs >= 150.0) & (freqs <= 2500.0)).squeeze(1)
    if stft.shape[1] < 3 or band.numel() == 0:
        return torch.zeros(3, dtype=torch.float64)
    strength, which = power[band].max(dim=0)
    bins = band[which]  # [N]
    frames = torch.arange(stft.shape[1])
    phase = torch.angle(stft[bins[1:], frames[1:]]) - torch.angle(stft[bins[1:], frames[:-1]])
    expected = 2 * math.pi * bins[1:].to(torch.float64) * _HOP / _N_FFT
    deviation = torch.remainder(phase - expected + math.pi, 2 * math.pi) - math.pi
    hz = (bins[1:] + deviation * _N_FFT / (2 * math.pi * _HOP)) * sample_rate / _N_FFT
    cents = 1200 * torch.log2(hz.clamp(min=20.0) / 440.0)
    step = cents.diff().abs()
    # Only steps within one held partial count: same or neighbouring bin, strong frames.
    same = (bins[2:] - bins[1:-1]).abs() <= 1
    loud = strength[2:] >= strength.median()
    moves = step[same & loud & (step < 100.0)]
    if moves.numel() == 0:
        return torch.zeros(3, dtype=torch.float64)
    steady = (moves < 3.0).to(torch.float64).mean()
    return torch.stack([moves.square().mean().sqrt(), moves.median(), steady])

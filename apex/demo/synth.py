"""Render one synthetic demo song from its traits by vectorised additive synthesis: an eighth-note
grid in 4/4, two-bar sections, a pad (one chord per bar), a bass on the quarter notes, a lead
melody (an instrument, or a vocal-like lead shaped by vowel formants) and a kick/snare/hat kit.
What each trait changes in the sound: ``data/README.md``, "Systems and traits"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

TABLE_SIZE = 2048  # samples per wavetable cycle
JITTER_S = 0.035  # onset jitter at timing = 0, seconds
DRIFT = 0.12  # relative tempo swing at timing = 0
STEPS_PER_BAR = 8  # eighth notes in a 4/4 bar
SECTION_BARS = 2
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
#: Chord pairs (scale degrees, one chord per bar) a diatonic section draws from.
PROGRESSIONS = ((0, 4), (5, 3), (0, 3), (4, 0), (5, 4), (3, 4), (0, 5), (1, 4))
#: Vowel formants (Hz) of the vocal-like lead: F1, F2, F3.
VOWELS = (
    (800, 1150, 2900),
    (400, 1600, 2700),
    (350, 2300, 3000),
    (450, 800, 2830),
    (325, 700, 2530),
)
#: Harmonic amplitudes of the instrument leads (index 0 is the fundamental).
LEAD_TIMBRES: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "saw": tuple(1.0 / h for h in range(1, 11)),
        "square": tuple((1.0 / h if h % 2 else 0.0) for h in range(1, 11)),
        "flute": (1.0, 0.35, 0.12, 0.05),
        "organ": (1.0, 0.6, 0.0, 0.4, 0.0, 0.2, 0.0, 0.25),
    }
)


@dataclass(frozen=True)
class ClipSpec:
    """Everything but the generator's seed that decides one clip's audio: ``traits`` in (0, 1),
    ``tonic`` pitch class 0 (C) to 11 (B), ``minor`` (natural minor, else major), ``bpm`` in
    quarter notes per minute, ``lead`` ``"voice"`` or a key of :data:`LEAD_TIMBRES`."""

    traits: Mapping[str, float]
    tonic: int
    minor: bool
    bpm: float
    lead: str
    duration_s: float
    sample_rate: int
    channels: int


def render_clip(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """``[channels, round(duration_s * sample_rate)]`` float32 in [-1, 1]; the same spec and
    generator state give identical samples."""
    sr, tr = spec.sample_rate, spec.traits
    n = round(spec.duration_s * sr)
    onsets = _step_times(spec, rng)
    sections = _plan_sections(spec, rng, len(onsets) - 1)
    jitter = JITTER_S * (1.0 - tr["timing"])
    buf = np.zeros(n + sr, dtype=np.float64)  # one spare second for note tails
    _render_band(buf, spec, rng, onsets, sections, jitter)
    _render_lead(buf, spec, rng, onsets, sections, jitter)
    _render_drums(buf, sr, rng, onsets, jitter)
    return _produce(buf[:n], spec, rng)


def _step_times(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """Onset of every eighth-note step, seconds ``[steps + 1]``, with the tempo drift applied."""
    eighth = 30.0 / spec.bpm
    n_steps = int(np.ceil(spec.duration_s / (eighth * (1 - DRIFT)))) + 1
    amp = DRIFT * (1.0 - spec.traits["timing"])
    period = rng.uniform(24, 64)
    k = np.arange(n_steps)
    lengths = eighth * (1.0 + amp * np.sin(2 * np.pi * k / period + rng.uniform(0, 2 * np.pi)))
    return np.concatenate([[0.0], np.cumsum(lengths)])


def _plan_sections(spec: ClipSpec, rng: np.random.Generator, n_steps: int) -> list[dict]:
    """Chords and melody per section; repeated sections reuse the same material object."""
    per_section = STEPS_PER_BAR * SECTION_BARS
    n_sections = -(-n_steps // per_section)
    template = [0, 0, 1, 0, 0, 1, 0, 1]
    materials: dict[int, dict] = {}
    plan = []
    for s in range(n_sections):
        wanted = template[s % len(template)]
        if s > 0 and rng.random() >= spec.traits["structure"]:
            wanted = 100 + s  # fresh material instead of a repeat
        if wanted not in materials:
            materials[wanted] = _material(spec, rng, per_section)
        plan.append(materials[wanted])
    return plan


def _material(spec: ClipSpec, rng: np.random.Generator, steps: int) -> dict:
    """One section's chords (MIDI triads per bar) and melody ``[(step, length, midi)]``."""
    scale = np.array(MINOR if spec.minor else MAJOR)
    harmony = spec.traits["harmony"]
    chords = []
    prog = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    for degree in prog:
        if rng.random() < harmony:
            idx = degree + np.array([0, 2, 4])
            chord = 48 + spec.tonic + scale[idx % 7] + 12 * (idx // 7)
        else:  # a random cluster: random root, random (often dissonant) stacked intervals
            chord = 48 + rng.integers(12) + np.concatenate([[0], np.cumsum(rng.integers(1, 7, 2))])
        chords.append(chord.astype(int))
    melody, step, prev = [], 0, 72 + spec.tonic % 12 - 12 * (spec.tonic > 5)
    pool = np.arange(60, 82)
    in_scale = np.isin((pool - spec.tonic) % 12, scale)
    while step < steps:
        length = int(rng.choice([1, 1, 2, 2, 3, 4]))
        if rng.random() < 0.2:
            step += length
            continue
        if rng.random() < harmony:
            chord_pc = chords[min(step // STEPS_PER_BAR, len(chords) - 1)] % 12
            weight = in_scale * (1.0 + 2.0 * np.isin(pool % 12, chord_pc))
            weight = weight * np.exp(-np.abs(pool - prev) / 3.0)  # prefer stepwise motion
            pitch = int(rng.choice(pool, p=weight / weight.sum()))
        else:
            pitch = int(rng.choice(pool))
        melody.append((step, min(length, steps - step), pitch))
        prev, step = pitch, step + length
    return {"chords": chords, "melody": melody}


def _table(harmonics: np.ndarray) -> np.ndarray:
    """One wavetable cycle ``[TABLE_SIZE]`` with the given harmonic amplitudes, peak 1."""
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=complex)
    spectrum[1 : len(harmonics) + 1] = -1j * np.asarray(harmonics)  # sines
    cycle = np.fft.irfft(spectrum, TABLE_SIZE)
    return (cycle / np.abs(cycle).max()).astype(np.float32)


def _voice_table(f0: float, vowel: tuple[int, int, int], sr: int) -> np.ndarray:
    """A sung-vowel wavetable: a glottal-like source (1/h) shaped by three formant peaks."""
    h = np.arange(1, max(2, int(0.45 * sr / f0)) + 1)
    freqs = h * f0
    envelope = sum(
        np.exp(-0.5 * ((freqs - f) / bw) ** 2) * g
        for f, bw, g in zip(vowel, (90, 130, 180), (1.0, 0.6, 0.3), strict=True)
    )
    return _table((0.05 + envelope) / h**0.7)


def _note(
    buf: np.ndarray,
    sr: int,
    start_s: float,
    dur_s: float,
    midi: float,
    table: np.ndarray,
    amp: float,
    *,
    attack_s: float = 0.005,
    release_s: float = 0.01,
    decay_s: float | None = None,
    vibrato_cents: float = 0.0,
    scoop_cents: float = 0.0,
    rng: np.random.Generator | None = None,
) -> None:
    """Add one note to ``buf`` (mono, at ``sr``) in place; vibrato needs ``rng``."""
    start = max(0, round(start_s * sr))
    count = min(round((dur_s + release_s) * sr), len(buf) - start)
    if count <= 8:
        return
    f0 = 440.0 * 2.0 ** ((midi - 69) / 12)
    t = np.arange(count) / sr
    if vibrato_cents > 0 or scoop_cents > 0:
        cents = np.zeros(count)
        if vibrato_cents > 0:
            ramp = np.clip((t - 0.12) / 0.25, 0.0, 1.0)  # vibrato sets in after the attack
            rate = rng.uniform(4.8, 6.4)
            cents += vibrato_cents * ramp * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3))
        if scoop_cents > 0:
            cents -= scoop_cents * np.exp(-t / 0.05)
        cycles = np.cumsum(f0 * np.exp2(cents / 1200)) / sr
    else:  # steady pitch: the phase is linear, no integration needed
        cycles = t * f0
    # TABLE_SIZE is a power of two, so a bit mask wraps the index (cheaper than a float modulo).
    wave = table[(cycles * TABLE_SIZE).astype(np.int64) & (TABLE_SIZE - 1)]
    env = np.ones(count, dtype=np.float32)
    n_attack = min(count, max(1, round(attack_s * sr)))
    env[:n_attack] = np.arange(1, n_attack + 1, dtype=np.float32) / n_attack
    tail = np.clip((dur_s + release_s - t[-round(release_s * sr) - 1 :]) / release_s, 0.0, 1.0)
    env[-len(tail) :] *= tail.astype(np.float32)
    if decay_s is not None:
        env *= (0.35 + 0.65 * np.exp(-t / decay_s)).astype(np.float32)
    buf[start : start + count] += amp * env * wave


def _render_band(buf, spec, rng, onsets, sections, jitter) -> None:
    """Pad (one chord per bar) and bass (chord root on every quarter)."""
    sr = spec.sample_rate
    pad, bass = _table(np.array([1.0, 0.3, 0.1])), _table(np.array([1.0, 0.5, 0.25, 0.12]))
    n_steps = len(onsets) - 1
    for bar_start in range(0, n_steps, STEPS_PER_BAR):
        material = sections[bar_start // (STEPS_PER_BAR * SECTION_BARS)]
        chord = material["chords"][(bar_start // STEPS_PER_BAR) % SECTION_BARS]
        end = onsets[min(bar_start + STEPS_PER_BAR, n_steps)]
        t0 = onsets[bar_start] + rng.normal(0, jitter)
        for pitch in chord:
            _note(buf, sr, t0, end - t0, pitch + 12, pad, 0.07, attack_s=0.08, release_s=0.15)
        for q in range(bar_start, min(bar_start + STEPS_PER_BAR, n_steps), 2):
            t = onsets[q] + rng.normal(0, jitter)
            dur = 0.9 * (onsets[min(q + 2, n_steps)] - onsets[q])
            _note(buf, sr, t, dur, chord[0] - 12, bass, 0.22, attack_s=0.01, decay_s=0.25)


def _render_lead(buf, spec, rng, onsets, sections, jitter) -> None:
    """The melody, on an instrument or sung; ``expression`` decides how human it sounds."""
    sr, e = spec.sample_rate, spec.traits["expression"]
    per_section = STEPS_PER_BAR * SECTION_BARS
    n_steps = len(onsets) - 1
    voice = spec.lead == "voice"
    table = None if voice else _table(np.array(LEAD_TIMBRES[spec.lead]))
    shape = {  # every note's envelope and pitch bends, from the clip's expression
        "attack_s": 0.002 + 0.06 * e,
        "release_s": 0.004 + 0.08 * e,
        "decay_s": (0.3 + 1.5 * e) if e > 0.3 else None,
        "vibrato_cents": 45.0 * e,
        "scoop_cents": 70.0 * e if voice else 0.0,
    }
    for s, material in enumerate(sections):
        for step, length, pitch in material["melody"]:
            first = s * per_section + step
            if first >= n_steps:
                break
            last = min(first + length, n_steps)
            t0 = onsets[first] + rng.normal(0, jitter)
            # A robotic lead fills its whole slot; a human one breathes between notes.
            dur = (onsets[last] - onsets[first]) * (1.0 - e * rng.uniform(0.05, 0.25))
            detuned = pitch + rng.normal(0, 0.08 * e)
            velocity = 0.3 * float(np.clip(1.0 + rng.normal(0, 0.25 * e), 0.5, 1.4))
            if voice:
                f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
                table = _voice_table(f0, VOWELS[rng.integers(len(VOWELS))], sr)
            _note(buf, sr, t0, dur, detuned, table, velocity, rng=rng, **shape)


def _render_drums(buf, sr, rng, onsets, jitter) -> None:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hat on every eighth."""
    t = np.arange(round(0.2 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(45 + 70 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.07)
    noise = rng.standard_normal(len(t))
    snare = (0.6 * noise + np.sin(2 * np.pi * 190 * t)) * np.exp(-t / 0.05)
    hat = np.diff(noise, prepend=0.0) * np.exp(-t / 0.012)
    for step in range(len(onsets) - 1):
        hits = [(hat, 0.05)]
        if step % 4 == 0:
            hits.append((kick, 0.5))
        elif step % 4 == 2:
            hits.append((snare, 0.22))
        start = max(0, round((onsets[step] + rng.normal(0, jitter)) * sr))
        for sound, gain in hits:
            count = min(len(sound), len(buf) - start)
            if count > 0:
                buf[start : start + count] += gain * rng.uniform(0.8, 1.0) * sound[:count]


def _produce(mix: np.ndarray, spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """Mix bus: muddy low-pass, clipping, noise floor, stereo image, peak normalisation."""
    sr, tr = spec.sample_rate, spec.traits
    cutoff = 500.0 * 22.0 ** tr["brightness"]
    if cutoff < 0.45 * sr:
        from scipy.signal import butter, sosfilt  # lazy: scipy.signal takes seconds to import

        mix = sosfilt(butter(4, cutoff, "low", fs=sr, output="sos"), mix)
    mix = mix / (np.abs(mix).max() + 1e-9)
    drive = 1.0 + 12.0 * (1.0 - tr["headroom"]) ** 2
    mix = np.clip(drive * mix, -1.0, 1.0)
    noise_rms = 10.0 ** ((-68.0 + 50.0 * (1.0 - tr["cleanliness"])) / 20.0)
    channels = [mix]
    if spec.channels == 2:  # a little inter-channel delay gives a real (not dual-mono) image
        delay = max(1, round(0.0004 * sr))
        channels.append(0.85 * mix + 0.15 * np.concatenate([np.zeros(delay), mix[:-delay]]))
    # Uniform white noise with unit variance: same floor as Gaussian, several times cheaper.
    scale = noise_rms * np.sqrt(12.0)
    out = np.stack([c + scale * (rng.random(len(c), dtype=np.float32) - 0.5) for c in channels])
    return (0.89 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)

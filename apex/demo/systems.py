"""The named demo systems (``demo-*``) and the ground truth of their clips. A system fixes the
means of the seven traits (in (0, 1), 1 the good end; :mod:`apex.demo.synth`) and how often it
sings; each clip draws its own traits around them, so systems overlap. Ground-truth formulas and
constants: ``data/README.md``, "Ground truth"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from apex.tasks import AESTHETICS, ENGAGEMENT_POWER

TRAITS = ("harmony", "timing", "cleanliness", "headroom", "brightness", "structure", "expression")

#: Standard deviation (logit units) of a clip's own deviation from its system's trait means.
TRAIT_SPREAD = 0.75
#: Standard deviation (logit units) of the clip-level "form" factor shared by all seven traits.
FORM_SPREAD = 0.55


@dataclass(frozen=True)
class DemoSystem:
    """One synthetic generator: ``means`` of each trait in (0, 1); ``vocal``: probability in
    [0, 1] that it sings when the prompt asks for vocals (else an instrument plays the lead)."""

    name: str
    means: Mapping[str, float]
    vocal: float

    def __post_init__(self) -> None:
        if not self.name.startswith("demo-"):
            raise ValueError(f"demo system name {self.name!r} must start with 'demo-'")
        if set(self.means) != set(TRAITS):
            raise ValueError(f"{self.name}: means must give exactly the traits {TRAITS}")
        if not all(0.0 < v < 1.0 for v in self.means.values()):
            raise ValueError(f"{self.name}: trait means must lie strictly between 0 and 1")
        # Read-only view, so the module-level SYSTEMS tuple is immutable all the way down.
        object.__setattr__(self, "means", MappingProxyType(dict(self.means)))

    def draw_traits(self, rng: np.random.Generator) -> dict[str, float]:
        """One clip's ``{trait: value in (0, 1)}`` (``len(TRAITS) + 1`` normal draws of ``rng``)."""
        form = rng.normal(0.0, FORM_SPREAD)
        own = rng.normal(0.0, TRAIT_SPREAD, size=len(TRAITS))
        means = np.array([self.means[t] for t in TRAITS])
        logits = np.log(means / (1.0 - means)) + form + own
        values = 1.0 / (1.0 + np.exp(-logits))
        return {t: float(v) for t, v in zip(TRAITS, values, strict=True)}


#: The demo systems, strongest first by design (their measured order comes from the votes):
#: name, probability it sings when the prompt asks for vocals, then the means of TRAITS
#: (harmony, timing, cleanliness, headroom, brightness, structure, expression).
SYSTEMS: tuple[DemoSystem, ...] = tuple(
    DemoSystem(name, dict(zip(TRAITS, means, strict=True)), vocal)
    for name, vocal, *means in (
        ("demo-virtuoso", 0.0, 0.92, 0.9, 0.92, 0.9, 0.85, 0.85, 0.85),  # polished instrumental
        ("demo-balladeer", 1.0, 0.85, 0.8, 0.85, 0.85, 0.75, 0.8, 0.9),  # natural sung lead
        ("demo-autotune", 1.0, 0.78, 0.85, 0.8, 0.78, 0.7, 0.7, 0.07),  # robotic, gated lead
        ("demo-garage", 0.8, 0.8, 0.7, 0.12, 0.15, 0.6, 0.75, 0.65),  # noise floor and clipping
        ("demo-drift", 0.5, 0.75, 0.1, 0.75, 0.75, 0.7, 0.55, 0.6),  # sloppy onsets, drifting tempo
        ("demo-murk", 0.5, 0.7, 0.7, 0.7, 0.65, 0.07, 0.6, 0.55),  # muddy low-pass mix
        ("demo-noodle", 0.0, 0.08, 0.6, 0.72, 0.7, 0.7, 0.1, 0.5),  # random pitches, no repeats
        ("demo-static", 0.6, 0.22, 0.22, 0.2, 0.22, 0.25, 0.2, 0.2),  # weak on every trait
    )
)

#: Standard deviation of the per-clip "rater" noise on the 0-1 scale (0.12 on the 1-5 scale).
RATER_NOISE = 0.03
ROBOT_VOICE_PENALTY = 0.6

#: Weight of each trait in each aesthetic; each row sums to 1.
AESTHETIC_WEIGHTS: Mapping[str, Mapping[str, float]] = {
    "coherence": {"structure": 0.35, "timing": 0.30, "harmony": 0.20, "headroom": 0.15},
    "musicality": {"harmony": 0.45, "timing": 0.30, "expression": 0.25},
    "memorability": {"structure": 0.55, "harmony": 0.30, "expression": 0.15},
    "clarity": {"structure": 0.40, "cleanliness": 0.20, "brightness": 0.20, "headroom": 0.20},
    "naturalness": {"expression": 0.50, "headroom": 0.20, "cleanliness": 0.15, "brightness": 0.15},
}


def aesthetics(
    traits: np.ndarray, sung: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``{aesthetic: [N]}`` on 1-5 from ``traits`` ``[N, len(TRAITS)]`` in (0, 1) and ``sung``
    ``[N]`` (a robotic sung lead loses naturalness); ``rng`` draws the rater noise."""
    weights = np.array([[AESTHETIC_WEIGHTS[a].get(t, 0.0) for t in TRAITS] for a in AESTHETICS])
    raw = traits @ weights.T + rng.normal(0.0, RATER_NOISE, (len(traits), len(AESTHETICS)))
    scores = 1.0 + 4.0 * np.clip(raw, 0.0, 1.0)
    nat = AESTHETICS.index("naturalness")
    expression = traits[:, TRAITS.index("expression")]
    scores[:, nat] -= ROBOT_VOICE_PENALTY * (1.0 - expression) * sung
    scores = np.clip(scores, 1.0, 5.0)
    return {name: scores[:, i] for i, name in enumerate(AESTHETICS)}


def engagement_scores(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """``[N]`` raw counts -> ``[N]`` scores in (0, 100]: percentile rank (ties averaged), then the
    power transform."""
    percentile = pd.Series(np.asarray(counts, dtype=float)).rank(method="average", pct=True)
    return 100.0 * percentile.to_numpy() ** ENGAGEMENT_POWER


def engagement(scores: Mapping[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``streams``, ``likes`` (``[N]`` int64), ``score_streams``, ``score_likes`` (0-100) and
    ``quality`` (about 1-5) from the aesthetics ``{name: [N]}``."""
    n = len(scores[AESTHETICS[0]])
    mean = np.mean([scores[a] for a in AESTHETICS], axis=0)
    popularity = rng.standard_normal(n)
    log_streams = 5.5 + 1.1 * (mean - 3.0) + 0.9 * popularity + 0.5 * rng.standard_t(3, n)
    streams = np.floor(np.exp(np.clip(log_streams, 0.0, 16.0))).astype(np.int64)
    like_logit = -3.2 + 0.5 * (scores["memorability"] - 3.0) + 0.3 * (scores["musicality"] - 3.0)
    like_logit = like_logit + 0.3 * popularity + 0.3 * rng.standard_t(3, n)
    likes = rng.binomial(streams, 1.0 / (1.0 + np.exp(-like_logit))).astype(np.int64)
    appeal = 0.5 * popularity + np.sqrt(0.75) * rng.standard_normal(n)
    return {
        "streams": streams,
        "likes": likes,
        "score_streams": engagement_scores(streams),
        "score_likes": engagement_scores(likes),
        "quality": mean + 0.2 * appeal,
    }

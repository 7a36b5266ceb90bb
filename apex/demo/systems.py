"""The named demo "systems" (``demo-*``): synthesisers with controlled, audible qualities.

A system fixes the means of the seven *traits* (in (0, 1), 1 the good end; :mod:`apex.demo.synth`)
and how often it sings; each clip draws its own traits around the means, so systems overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

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
    description: str
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


def _system(name: str, description: str, vocal: float, *values: float) -> DemoSystem:
    return DemoSystem(name, description, dict(zip(TRAITS, values, strict=True)), vocal)


#: The demo systems, strongest first by design (their measured order comes from the votes).
#: Trait order: harmony, timing, cleanliness, headroom, brightness, structure, expression.
SYSTEMS: tuple[DemoSystem, ...] = (
    _system(
        "demo-virtuoso",
        "Synthetic demo: polished instrumental, diatonic, tight, clean, structured, expressive.",
        0.0,
        *(0.92, 0.9, 0.92, 0.9, 0.85, 0.85, 0.85),
    ),
    _system(
        "demo-balladeer",
        "Synthetic demo: strong songs with a natural-sounding, vibrato-rich vocal-like lead.",
        1.0,
        *(0.85, 0.8, 0.85, 0.85, 0.75, 0.8, 0.9),
    ),
    _system(
        "demo-autotune",
        "Synthetic demo: tidy songs with a robotic lead (no vibrato, hard-gated notes).",
        1.0,
        *(0.78, 0.85, 0.8, 0.78, 0.7, 0.7, 0.07),
    ),
    _system(
        "demo-garage",
        "Synthetic demo: good songwriting ruined by a loud noise floor and clipping.",
        0.8,
        *(0.8, 0.7, 0.12, 0.15, 0.6, 0.75, 0.65),
    ),
    _system(
        "demo-drift",
        "Synthetic demo: decent material played with sloppy onsets and a drifting tempo.",
        0.5,
        *(0.75, 0.1, 0.75, 0.75, 0.7, 0.55, 0.6),
    ),
    _system(
        "demo-murk",
        "Synthetic demo: reasonable songs buried under a muddy low-pass mix.",
        0.5,
        *(0.7, 0.7, 0.7, 0.65, 0.07, 0.6, 0.55),
    ),
    _system(
        "demo-noodle",
        "Synthetic demo: random pitches and no repeated sections; clean but aimless.",
        0.0,
        *(0.08, 0.6, 0.72, 0.7, 0.7, 0.1, 0.5),
    ),
    _system(
        "demo-static",
        "Synthetic demo: the weakest system: random-ish notes, sloppy, noisy, clipped, muddy.",
        0.6,
        *(0.22, 0.22, 0.2, 0.22, 0.25, 0.2, 0.2),
    ),
)

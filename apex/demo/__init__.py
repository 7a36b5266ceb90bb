"""Deterministic synthetic demo corpus: named demo systems, clips, ground truth, simulated votes.

It stands in for real AI-generated music wherever the network is missing (tests, the offline app,
benchmarks) and is labelled as a demo wherever it appears. Importing this package is cheap: the
corpus is built only when :func:`build_demo_corpus` or :func:`ensure_demo_corpus` is called.
:mod:`apex.demo.listeners` simulates every listener's choice; :mod:`apex.demo.model` fits the
offline demo heads on the corpus (``ensure_demo_model(settings)``).
"""

from apex.demo.corpus import DEMO_VERSION, build_demo_corpus, ensure_demo_corpus, load_metadata
from apex.demo.listeners import simulate_votes
from apex.demo.systems import SYSTEMS, TRAITS, DemoSystem

__all__ = [
    "DEMO_VERSION",
    "SYSTEMS",
    "TRAITS",
    "DemoSystem",
    "build_demo_corpus",
    "ensure_demo_corpus",
    "load_metadata",
    "simulate_votes",
]

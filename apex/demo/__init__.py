"""Deterministic synthetic demo corpus (systems, clips, ground truth) and simulated listeners,
standing in for real AI-generated music offline and labelled as a demo wherever it appears.
Importing it is cheap: the corpus is built on the first call that needs it."""

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

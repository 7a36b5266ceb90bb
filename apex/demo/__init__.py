"""Deterministic synthetic demo corpus: named demo systems, clips, ground truth, simulated votes.

It stands in for real AI-generated music wherever the network is missing (tests, the offline app,
benchmarks) and is labelled as a demo wherever it appears. Importing this package is cheap: the
corpus is built only when :func:`build_demo_corpus` or :func:`ensure_demo_corpus` is called.

The demo's other two parts live here too, imported only when used:
:mod:`apex.demo.model` (the offline demo heads, fitted by :mod:`apex.training` on the corpus:
``ensure_demo_model(settings)``) and :mod:`apex.demo.evidence` (``apex eval --demo``: the
ablation and the real gate on simulated votes).
"""

from apex.demo.corpus import DEMO_VERSION, build_demo_corpus, ensure_demo_corpus, load_metadata
from apex.demo.systems import SYSTEMS, TRAITS, DemoSystem
from apex.demo.votes import simulate_votes

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

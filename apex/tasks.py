"""The seven APEX scores (names, groups, ranges) and the vote vocabulary, defined once: engagement
on 0-100 (percentiles of raw counts, power-transformed), aesthetics on 1-5 (SongEval's scale)."""

from __future__ import annotations

ENGAGEMENT: tuple[str, ...] = ("score_streams", "score_likes")
AESTHETICS: tuple[str, ...] = ("coherence", "musicality", "memorability", "clarity", "naturalness")
SCORE_NAMES: tuple[str, ...] = ENGAGEMENT + AESTHETICS

#: (low, high) of each score's scale.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    **{name: (0.0, 100.0) for name in ENGAGEMENT},
    **{name: (1.0, 5.0) for name in AESTHETICS},
}

#: One-line definitions shown to people (aesthetics follow SongEval's definitions).
SCORE_DESCRIPTIONS: dict[str, str] = {
    "score_streams": "Predicted play-count percentile on a generative-music platform (0-100).",
    "score_likes": "Predicted like/upvote percentile on a generative-music platform (0-100).",
    "coherence": "Overall coherence: the song holds together as one piece, with consistent style.",
    "musicality": "Musicality: pleasing melody, harmony and rhythm that work together.",
    "memorability": "Memorability: catchy, recognisable parts (a hook, a repeated motif).",
    "clarity": "Clarity of song structure: distinct sections and clean transitions.",
    "naturalness": "Naturalness: vocals and instruments sound human-performed, not robotic.",
}

#: Exponent of the engagement target transform, ``score = 100 * percentile ** power``: the paper
#: compresses the upper tail (exponent below 1) without publishing it; 0.5 is our choice.
ENGAGEMENT_POWER: float = 0.5

#: The reference's task variants: which outputs a checkpoint predicts.
TASK_OUTPUTS: dict[str, tuple[str, ...]] = {"popularity": ENGAGEMENT, "full": SCORE_NAMES}


#: The vote vocabulary (Music Arena's): which clip of a battle the listener preferred (the
#: store's SQL checks, exporters, ratings and training data are built from it).
PREFERENCES: tuple[str, ...] = ("A", "B", "TIE", "BOTH_BAD")
#: The two clips of a battle.
SIDES: tuple[str, ...] = ("A", "B")
#: Side A's share of the win per rated preference (BOTH_BAD is kept but rates nobody).
A_WIN_SHARE: dict[str, float] = {"A": 1.0, "B": 0.0, "TIE": 0.5}
#: Where a stored vote came from (only ``live`` votes train a refit by default).
VOTE_SOURCES: tuple[str, ...] = ("live", "simulated", "imported")
#: How the released dataset describes each vote source (the ``source`` column's documentation).
VOTE_SOURCE_DOCS: dict[str, str] = {
    "live": "live (a person)",
    "simulated": "simulated (demo votes)",
    "imported": "imported",
}
#: Preferences that pick a winner (the pairwise-accuracy metrics count only these).
DECISIVE: tuple[str, ...] = ("A", "B")


#: BibTeX of the APEX paper (arXiv 2605.03395), shown on the About tab and the dataset card.
APEX_BIBTEX = """@misc{husain2026apex,
  title         = {APEX: Large-scale Multi-task Aesthetic-Informed Popularity Prediction for
                   AI-Generated Music},
  author        = {Jaavid Aktar Husain and Dorien Herremans},
  year          = {2026},
  eprint        = {2605.03395},
  archivePrefix = {arXiv},
  primaryClass  = {cs.SD},
  url           = {https://arxiv.org/abs/2605.03395}
}"""

"""APEX: predict engagement and aesthetic scores of AI-generated songs from audio.

Public API (filled in by the scoring core): ``load_scorer``, ``Scorer``, ``ScoreResult``,
``load_audio``, ``AudioError``, ``SCORE_NAMES``, ``Settings``.
"""

from apex.settings import Settings, SettingsError
from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES

__all__ = ["AESTHETICS", "ENGAGEMENT", "SCORE_NAMES", "Settings", "SettingsError"]

"""What a voter sees once the vote is stored: the systems and APEX's view of the battle."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from annotation.store import VoteRecord
from apex.tasks import DECISIVE

if TYPE_CHECKING:
    from annotation.pool import ClipPool, ScorerLike

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reveal:
    """What the voter sees once the vote is stored: ``apex_a``/``apex_b``, APEX's seven scores
    per clip (0-100 / 1-5); ``apex_pick`` (``"A"``/``"B"``), its probability (0.5-1) and whether
    it ``agrees`` with an A/B vote (None for TIE or BOTH_BAD); all empty or None without a model.
    ``voter_votes`` counts this one; ``apex_pending``: APEX is still scoring a clip
    (:meth:`annotation.arena.Arena.late_reveal`), ``apex_note`` says why its view is missing."""

    battle_id: str
    vote_id: str
    preference: str
    system_a: str
    system_b: str
    apex_a: dict[str, float]
    apex_b: dict[str, float]
    apex_pick: str | None
    apex_probability: float | None
    apex_agrees: bool | None
    voter_votes: int
    model_version: str | None
    apex_pending: bool = False
    apex_note: str = ""


@dataclass(frozen=True)
class ApexView:
    """APEX's view of a battle: the seven scores (+ ``"preference"``) per clip, its probability
    that listeners prefer A (None: no scorer, or compare failed), and the model of both clips'
    scores (``"v1 + v2"`` mid re-score)."""

    apex_a: dict[str, float]
    apex_b: dict[str, float]
    p_a: float | None
    model_version: str | None


def apex_view(
    pool: ClipPool,
    scorer: ScorerLike | None,
    clip_a: str,
    clip_b: str,
    model_version: str | None,
) -> ApexView | None:
    """APEX's view of ``clip_a`` vs ``clip_b`` from the pool (never scoring audio), or None unless
    both are scored; ``model_version`` names the model of a score that names none."""
    apex_a, apex_b = _prediction(pool, clip_a), _prediction(pool, clip_b)
    if not (apex_a and apex_b):
        return None
    versions = [pool[c].model_version or model_version for c in (clip_a, clip_b)]
    version = versions[0] if versions[0] == versions[1] else " + ".join(map(str, versions))
    return ApexView(apex_a, apex_b, _compare(pool, scorer, clip_a, clip_b), version)


def _prediction(pool: ClipPool, clip_id: str) -> dict[str, float]:
    clip = pool[clip_id]
    prediction = dict(clip.scores)
    preference = (clip.result or {}).get("preference")
    if prediction and preference is not None:
        prediction["preference"] = float(preference)
    return prediction


def _compare(pool: ClipPool, scorer: ScorerLike | None, clip_a: str, clip_b: str) -> float | None:
    result_a, result_b = pool.result(clip_a), pool.result(clip_b)
    if scorer is None or result_a is None or result_b is None:
        return None  # no model, or unscored clips: never re-score audio inside a vote
    from apex.checkpoints import CheckpointError

    try:
        p = float(scorer.compare(result_a, result_b))
    except CheckpointError:
        # The human vote is the valuable record: a model that cannot compare must not lose it
        # (stored without APEX's pick, logged). Any other error is a bug and is raised.
        logger.exception("APEX compare failed for %s vs %s; vote kept without it", clip_a, clip_b)
        return None
    return p if math.isfinite(p) else None


def _shown_view(view: ApexView, preference: str) -> dict[str, Any]:
    """The :class:`Reveal` fields that show ``view`` to the voter who voted ``preference``."""
    pick = probability = agrees = None
    if view.p_a is not None:
        pick = "A" if view.p_a >= 0.5 else "B"
        probability = max(view.p_a, 1.0 - view.p_a)
        agrees = pick == preference if preference in DECISIVE else None
    return {
        "apex_a": dict(view.apex_a),
        "apex_b": dict(view.apex_b),
        "apex_pick": pick,
        "apex_probability": probability,
        "apex_agrees": agrees,
        "model_version": view.model_version,
    }


def reveal_of(record: VoteRecord, voter_votes: int, *, pending: bool, note: str) -> Reveal:
    """The reveal of a stored vote (APEX's view as it was at vote time)."""
    view = ApexView(
        record.apex_a or {}, record.apex_b or {}, record.apex_p_a, record.apex_model_version
    )
    return Reveal(
        battle_id=record.battle_uuid,
        vote_id=record.vote_id,
        preference=record.preference,
        system_a=record.system_a,
        system_b=record.system_b,
        voter_votes=voter_votes,
        apex_pending=pending,
        apex_note=note,
        **_shown_view(view, record.preference),
    )


def with_scores(reveal: Reveal, view: ApexView) -> Reveal:
    """``reveal`` with APEX's view of the battle filled in."""
    shown = _shown_view(view, reveal.preference)
    return dataclasses.replace(reveal, apex_pending=False, apex_note="", **shown)

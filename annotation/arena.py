"""The arena service: issue a battle, record listening, accept or refuse a vote, reveal.

The server keeps every fact that matters (which clips, which systems, when the battle was issued,
to which session, what was played when); the client only ever holds an opaque battle id and two
audio files until its vote is stored. Every refusal raises :class:`~annotation.rules.VoteRefused`
with a message meant for the person, and nothing is stored for a refused vote.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from annotation import rules
from annotation.identity import Pseudonymizer, load_or_create_salt
from annotation.pool import ClipPool, ScorerLike
from annotation.rules import ListenEvent, VoteRefused
from annotation.store import Battle, DuplicateVote, VoteRecord, VoteStore
from apex.settings import Settings

logger = logging.getLogger(__name__)

#: How often the battles-per-pair counts the sampler weighs by are re-read from the store,
#: seconds. In between, this process counts its own battles; a re-read adds those of other
#: processes sharing the store (replicas, imports). A full count costs a scan of every battle.
PAIR_COUNTS_REFRESH_S = 60.0
#: Votes of different voters run in parallel; one voter's votes run one at a time (locks are
#: striped by voter pseudonym, so the rate limit holds without one global lock).
_VOTE_LOCK_STRIPES = 64


@dataclass(frozen=True)
class BattleTicket:
    """What the client receives for a new battle: an opaque id and two anonymous audio files.

    Attributes:
        issued_at: server time of issue, Unix seconds.
    """

    battle_id: str
    audio_a: Path
    audio_b: Path
    issued_at: float


@dataclass(frozen=True)
class Reveal:
    """What the voter sees once the vote is stored.

    Attributes:
        apex_a, apex_b: APEX's predictions for each clip (seven scores, 0-100 / 1-5; empty when no
            model was serving).
        apex_pick: the clip APEX prefers (``"A"``/``"B"``), or None without a model.
        apex_probability: APEX's probability for its pick, 0.5-1, or None.
        apex_agrees: whether the pick matches an A/B vote; None for TIE, BOTH_BAD or no model.
        voter_votes: votes this voter has cast in total, this one included.
    """

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


class Arena:
    """Battles, listening and votes over a clip pool and a vote store.

    Args:
        settings: rules (``min_listen_s``, ``battle_ttl_s``, rate limits, feedback length, sampler
            mode) and the salt.
        pool: the clips.
        store: the vote store.
        scorer: APEX scorer for the reveal's pick (``compare``); None runs without predictions.
        sampler: anything with ``sample(*, pair_counts, ratings, exclude)``; default a
            :class:`annotation.sampler.PairSampler` over ``pool.frame()`` in ``settings.sampler``
            mode.
        ratings: returns the current ratings table for the ``info`` sampler (None: none yet).
        clock: server time source, Unix seconds (tests pass a fake clock).
        seed: sampler seed; None draws one, so battle order is not predictable across restarts.
    """

    def __init__(
        self,
        settings: Settings,
        pool: ClipPool,
        store: VoteStore,
        scorer: ScorerLike | None = None,
        sampler: Any = None,
        *,
        ratings: Callable[[], pd.DataFrame | None] | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if sampler is None:
            from annotation.sampler import PairSampler

            seed = secrets.randbits(32) if seed is None else seed
            sampler = PairSampler(pool.frame(), mode=settings.sampler, seed=seed)
        self.settings = settings
        self.pool = pool
        self.store = store
        self.scorer = scorer
        self._sampler = sampler
        self._ratings = ratings
        self._clock = clock
        self._ids = Pseudonymizer(load_or_create_salt(settings))
        self._vote_locks = tuple(threading.Lock() for _ in range(_VOTE_LOCK_STRIPES))
        self._pairs_lock = threading.Lock()
        self._pairs: dict[tuple[str, str], int] | None = None
        self._pairs_read_at = 0.0

    @property
    def model_version(self) -> str | None:
        """``"<model id>@<version>"`` of the model whose predictions the pool holds now."""
        return self.pool.model_version or _model_version(self.scorer)

    # ------------------------------------------------------------------ issue
    def new_battle(self, session_id: str, ip: str | None = None) -> BattleTicket:
        """Draw two clips for this session, record the battle, and hand out its ticket.

        Raises:
            VoteRefused: ``no_pair`` when the session has already heard every pair.
        """
        from annotation.sampler import NoPairAvailable

        session = self._ids.session(session_id)
        ratings = self._ratings() if self._ratings is not None else None
        try:
            clip_a, clip_b = self._sampler.sample(
                pair_counts=self._pair_counts(),
                ratings=ratings,
                exclude=self.store.seen_pairs(session),
            )
        except NoPairAvailable as exc:
            raise VoteRefused("no_pair", f"no new pair of clips is left for you: {exc}.") from None
        a, b = self.pool[clip_a], self.pool[clip_b]
        battle = Battle(
            battle_id=uuid.uuid4().hex,
            issued_at=self._clock(),
            session=session,
            clip_a=a.clip_id,
            clip_b=b.clip_id,
            system_a=a.system,
            system_b=b.system,
            audio_a=a.file_name,
            audio_b=b.file_name,
            # Same-prompt battles carry the prompt; a cross-prompt battle records both.
            prompt=a.prompt if a.prompt == b.prompt else f"{a.prompt} | {b.prompt}",
            is_instrumental=a.is_instrumental and b.is_instrumental,
        )
        self.store.insert_battle(battle)
        self._count_pair(battle.system_a, battle.system_b)
        return BattleTicket(battle.battle_id, a.path, b.path, battle.issued_at)

    def _pair_counts(self) -> dict[tuple[str, str], int]:
        """Battles per system pair: the store's count, re-read every PAIR_COUNTS_REFRESH_S."""
        with self._pairs_lock:
            now = time.monotonic()
            if self._pairs is None or now - self._pairs_read_at > PAIR_COUNTS_REFRESH_S:
                # A weight, not a record: a battle counted twice around a re-read is harmless.
                self._pairs, self._pairs_read_at = self.store.pair_counts(), now
            return dict(self._pairs)  # a copy: other threads go on counting

    def _count_pair(self, system_a: str, system_b: str) -> None:
        key = (system_a, system_b) if system_a <= system_b else (system_b, system_a)
        with self._pairs_lock:
            if self._pairs is not None:
                self._pairs[key] = self._pairs.get(key, 0) + 1

    # ------------------------------------------------------------------ listen
    def listen(
        self, battle_id: str, side: str, seconds: float, session_id: str
    ) -> dict[str, float]:
        """Record that the client has played ``seconds`` of clip ``side`` in total so far.

        Returns:
            Listening credited by the server so far, seconds per side (``{"A": .., "B": ..}``).

        Raises:
            VoteRefused: bad side or seconds, unknown/expired/voted battle, another session's.
        """
        rules.check_side(side)
        seconds = rules.check_listen_seconds(seconds)
        now = self._clock()
        battle = self._open_battle(battle_id, session_id, now)
        self.store.add_listen_event(battle_id, ListenEvent(side, seconds, now))
        return rules.listened_seconds(self.store.listen_events(battle_id), battle.issued_at)

    # ------------------------------------------------------------------ vote
    def vote(
        self,
        battle_id: str,
        preference: str,
        session_id: str,
        ip: str | None = None,
        *,
        feedback: str | None = None,
        ratings: Mapping[str, Mapping[str, int]] | None = None,
    ) -> Reveal:
        """Check every rule, store the vote durably, and reveal systems and APEX's view.

        Args:
            preference: one of :data:`annotation.rules.PREFERENCES`.
            feedback: optional free text (at most ``settings.feedback_max_chars``).
            ratings: optional ``{"A"|"B": {aesthetic: 1-5}}``.

        Raises:
            VoteRefused: any rule is broken (``str(exc)`` says which and what to do).
        """
        settings = self.settings
        rules.check_preference(preference)
        feedback = rules.check_feedback(feedback, settings.feedback_max_chars)
        clean_ratings = rules.check_ratings(ratings) or {}
        voter = self._ids.voter(session_id, ip)
        # One vote of this voter at a time in this process: the rate-limit count and the insert
        # must not interleave between threads (a voter firing requests in parallel gets no extra
        # votes). Other voters' votes go on meanwhile; the store keeps one vote per battle.
        with self._vote_locks[hash(voter) % _VOTE_LOCK_STRIPES]:
            now = self._clock()
            battle = self._open_battle(battle_id, session_id, now)
            rules.check_rate_limit(
                self.store.vote_times(voter, now - settings.rate_limit_window_s),
                now,
                limit=settings.rate_limit_votes,
                window_s=settings.rate_limit_window_s,
            )
            events = self.store.listen_events(battle_id)
            credit = rules.listened_seconds(events, battle.issued_at)
            rules.check_listening(credit, settings.min_listen_s)
            record = self._record(battle, voter, now, preference, events, credit)
            record = dataclasses.replace(
                record, feedback=feedback, ratings_a=clean_ratings.get("A"),
                ratings_b=clean_ratings.get("B"),
            )  # fmt: skip
            try:
                self.store.insert_vote(record)
            except DuplicateVote:
                raise VoteRefused(
                    "already_voted", "this battle already has a vote; start a new battle."
                ) from None
        return self._reveal(record, voter)

    # ------------------------------------------------------------------ helpers
    def _record(
        self,
        battle: Battle,
        voter: str,
        now: float,
        preference: str,
        events: list[ListenEvent],
        credit: Mapping[str, float],
    ) -> VoteRecord:
        for _ in range(3):  # a re-scoring pool may switch models under us: read one model's
            version = self.model_version
            apex_a, apex_b = self._prediction(battle.clip_a), self._prediction(battle.clip_b)
            p_a = self._compare(battle.clip_a, battle.clip_b)
            if self.model_version == version:
                break
        return VoteRecord(
            vote_id=uuid.uuid4().hex,
            battle_uuid=battle.battle_id,
            timestamp=now,
            user_pseudonym=voter,
            session_pseudonym=battle.session,
            prompt=battle.prompt,
            is_instrumental=battle.is_instrumental,
            system_a=battle.system_a,
            system_b=battle.system_b,
            clip_a=battle.clip_a,
            clip_b=battle.clip_b,
            audio_a=battle.audio_a,
            audio_b=battle.audio_b,
            preference=preference,
            listen_data_a=[[e.seconds, e.server_time] for e in events if e.side == "A"],
            listen_data_b=[[e.seconds, e.server_time] for e in events if e.side == "B"],
            total_listening_time_a=credit["A"],
            total_listening_time_b=credit["B"],
            apex_a=apex_a or None,
            apex_b=apex_b or None,
            apex_p_a=p_a,
            apex_model_version=version if (apex_a or p_a is not None) else None,
            source="live",
        )

    def _open_battle(self, battle_id: str, session_id: str, now: float) -> Battle:
        battle = self.store.get_battle(battle_id)
        if battle is None:
            raise VoteRefused(
                "unknown_battle", "this battle does not exist on the server; start a new battle."
            )
        if battle.session != self._ids.session(session_id):
            raise VoteRefused(
                "wrong_session",
                "this battle was issued to another session; start a new battle of your own.",
            )
        if battle.status == "voted":
            raise VoteRefused(
                "already_voted", "this battle already has a vote; start a new battle."
            )
        ttl = self.settings.battle_ttl_s
        if now - battle.issued_at > ttl:
            raise VoteRefused(
                "expired",
                f"this battle expired ({ttl / 60:g} minutes after it was issued); start a new one.",
            )
        return battle

    def _prediction(self, clip_id: str) -> dict[str, float]:
        clip = self.pool[clip_id]
        prediction = dict(clip.scores)
        preference = (clip.result or {}).get("preference")
        if prediction and preference is not None:
            prediction["preference"] = float(preference)
        return prediction

    def _compare(self, clip_a: str, clip_b: str) -> float | None:
        result_a, result_b = self.pool.result(clip_a), self.pool.result(clip_b)
        if self.scorer is None or result_a is None or result_b is None:
            return None  # no model, or unscored clips: never re-score audio inside a vote
        try:
            p = float(self.scorer.compare(result_a, result_b))
        except Exception:
            # The human vote is the valuable record: a model failure must not lose it, so the
            # vote is stored without APEX's pick and the failure is logged for the maintainer.
            logger.exception(
                "APEX compare failed for %s vs %s; vote kept without it", clip_a, clip_b
            )
            return None
        return p if math.isfinite(p) else None

    def _reveal(self, record: VoteRecord, voter: str) -> Reveal:
        p_a = record.apex_p_a
        pick = None if p_a is None else ("A" if p_a >= 0.5 else "B")
        agrees = None
        if pick is not None and record.preference in rules.SIDES:
            agrees = pick == record.preference
        return Reveal(
            battle_id=record.battle_uuid,
            vote_id=record.vote_id,
            preference=record.preference,
            system_a=record.system_a,
            system_b=record.system_b,
            apex_a=dict(record.apex_a or {}),
            apex_b=dict(record.apex_b or {}),
            apex_pick=pick,
            apex_probability=None if p_a is None else max(p_a, 1.0 - p_a),
            apex_agrees=agrees,
            voter_votes=self.store.vote_count(voter),
            model_version=record.apex_model_version,
        )


def _model_version(scorer: ScorerLike | None) -> str | None:
    if scorer is None:
        return None
    from annotation.pool import model_key

    return model_key(scorer.info())[0]

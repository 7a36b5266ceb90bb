"""The arena service: issue a battle, record listening, accept or refuse a vote, reveal. The
server keeps every fact; the client holds an opaque battle id and two audio files."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from annotation import rules
from annotation.board import Consensus
from annotation.flags import HISTORY_VOTES, PastVote, vote_flags
from annotation.identity import Pseudonymizer, load_or_create_salt
from annotation.loudness import LoudnessMatcher
from annotation.pool import ClipPool, ScorerLike, model_key
from annotation.pool.sources import pool_identity
from annotation.reveal import ApexView, Reveal, apex_view, reveal_of, with_scores
from annotation.rules import ListenEvent, VoteRefused
from annotation.sampler import NoPairAvailable, PairCounts, PairSampler, StoreRatings
from annotation.store import Battle, DuplicateVote, VoteRecord, VoteStore, new_vote
from apex.settings import Settings

__all__ = ["Arena", "BattleTicket", "Reveal"]

#: Seconds between re-reads of the battles-per-pair counts (a scan of every battle; in between,
#: this process counts its own) and refits of the board the ``contrarian`` flag compares with.
REFRESH_S = 60.0
#: One voter's votes run one at a time; locks are striped by voter, not one global lock.
_VOTE_LOCK_STRIPES = 64


@dataclass(frozen=True)
class BattleTicket:
    """What the client gets for a new battle: an opaque id, the two files to play (loudness-matched
    or original), the issue time (Unix seconds) and the stored prompt (``"p1 | p2"`` across two)."""

    battle_id: str
    audio_a: Path
    audio_b: Path
    issued_at: float
    prompt: str


class Arena:
    """Battles, listening and votes over a clip pool and a vote store, by ``settings``' rules.
    ``scorer``: APEX's, for the reveal's pick (None until :meth:`attach_scorer`); ``clock``: server
    time, Unix seconds; ``seed``: the pair sampler's (None draws one per process)."""

    def __init__(
        self,
        settings: Settings,
        pool: ClipPool,
        store: VoteStore,
        scorer: ScorerLike | None = None,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        seed = secrets.randbits(32) if seed is None else seed
        self._sampler = PairSampler(pool.frame(), mode=settings.sampler, seed=seed)
        info = settings.sampler == "info"  # the information-gain sampler reads the ratings
        self._ratings = StoreRatings(store, settings=settings) if info else None
        self.settings, self.pool, self.store, self.scorer = settings, pool, store, scorer
        self._clock = clock
        self._ids = Pseudonymizer(load_or_create_salt(settings))
        self._vote_locks = tuple(threading.Lock() for _ in range(_VOTE_LOCK_STRIPES))
        self._battles_issued = rules.RecentActions("started {n} battles", "start a new battle")
        self._listen_reports = rules.RecentActions(
            "sent {n} listening reports", "report listening again"
        )
        self._pairs = PairCounts(store.pair_counts, refresh_s=REFRESH_S)
        self._consensus = Consensus(store, refresh_s=REFRESH_S, settings=settings)
        self._pool_id = pool_identity(pool.root)  # every vote says where its clips are
        self.loudness = LoudnessMatcher(
            Path(settings.cache_dir) / "arena-loudness",
            target_lufs=settings.loudness_target_lufs,
            max_true_peak_dbtp=settings.loudness_true_peak_dbtp,
            enabled=settings.loudness_match,
        )

    @property
    def model_version(self) -> str | None:
        """The model the pool is scored with now (or the scorer's, for an unscored pool)."""
        if self.pool.model_version or self.scorer is None:
            return self.pool.model_version
        return model_key(self.scorer.info())[0]

    def attach_scorer(self, scorer: ScorerLike) -> None:
        """Use ``scorer`` for APEX's pick from now on (the arena opens before the model loads)."""
        self.scorer = scorer

    def new_battle(self, session_id: str, ip: str | None = None) -> BattleTicket:
        """Draw two clips for this session, record the battle, and hand out its ticket; refuse
        (:class:`VoteRefused`) past the voter's battles per window, or when no pair is new."""
        self._battles_issued.admit(
            self._ids.voter(session_id, ip),
            self._clock(),
            limit=self.settings.rate_limit_battles,
            window_s=self.settings.rate_limit_window_s,
        )
        session = self._ids.session(session_id)
        ratings = self._ratings() if self._ratings is not None else None
        try:
            clip_a, clip_b = self._sampler.sample(
                pair_counts=self._pairs.counts(),
                ratings=ratings,
                exclude=self.store.seen_pairs(session),
            )
        except NoPairAvailable as exc:
            raise VoteRefused("no_pair", f"no new pair of clips is left for you: {exc}.") from None
        a, b = self.pool[clip_a], self.pool[clip_b]
        self.pool.prioritize((a.clip_id, b.clip_id))  # scored while the visitor listens
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
        served_a = self.loudness.serve(a.path, a.content_hash)  # matched once, then cached
        served_b = self.loudness.serve(b.path, b.content_hash)
        self.store.insert_battle(battle)
        self._pairs.add(battle.system_a, battle.system_b)
        return BattleTicket(
            battle.battle_id, served_a.path, served_b.path, battle.issued_at, battle.prompt
        )

    def warm_loudness(self) -> threading.Thread:
        """Measure and match every pool clip on a daemon thread (see LoudnessMatcher.warm)."""
        return self.loudness.warm((clip.path, clip.content_hash) for clip in self.pool)

    def listen(
        self,
        battle_id: str,
        side: str,
        seconds: float,
        session_id: str,
        ip: str | None = None,
    ) -> dict[str, float]:
        """Record that the client has played ``seconds`` of clip ``side`` in total so far; return
        the listening credited so far, seconds per side. Raises :class:`VoteRefused` for a bad
        side or seconds, a battle not open to this session, or too many reports."""
        settings = self.settings
        rules.check_side(side)
        seconds = rules.check_listen_seconds(seconds)
        now = self._clock()
        battle = self._open_battle(battle_id, session_id, now)
        events = self.store.listen_events(battle_id)
        rules.check_listen_reports(len(events), settings.listen_reports_per_battle)
        self._listen_reports.admit(
            self._ids.voter(session_id, ip),
            now,
            limit=settings.rate_limit_listens,
            window_s=settings.rate_limit_window_s,
        )
        event = ListenEvent(side, seconds, now)
        self.store.add_listen_event(battle_id, event)
        return rules.listened_seconds([*events, event], battle.issued_at)

    def vote(
        self,
        battle_id: str,
        preference: str,
        session_id: str,
        ip: str | None = None,
        *,
        feedback: str | None = None,
        ratings: Mapping[str, Mapping[str, int]] | None = None,
        account: str | None = None,
    ) -> Reveal:
        """Check every rule (:class:`VoteRefused`), store the vote, reveal systems and APEX's view.
        ``ratings``: ``{"A"|"B": {aesthetic: 1-5}}``; ``account``: a signed-in Hugging Face id
        (OAuth ``sub``) that keys and rate-limits the vote instead of the address."""
        settings = self.settings
        rules.check_preference(preference)
        feedback = rules.check_feedback(feedback, settings.feedback_max_chars)
        clean_ratings = rules.check_ratings(ratings) or {}
        voter = self._ids.account(account) if account else self._ids.voter(session_id, ip)
        # One vote of this voter at a time: the rate-limit count and the insert must not
        # interleave (parallel requests get no extra votes); other voters go on meanwhile.
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
            record = dataclasses.replace(
                self._record(battle, voter, now, preference, events, credit),
                feedback=feedback,
                ratings_a=clean_ratings.get("A"),
                ratings_b=clean_ratings.get("B"),
                signed_in=bool(account),
            )
            try:
                self.store.insert_vote(record)
            except DuplicateVote:
                raise VoteRefused(
                    "already_voted", "this battle already has a vote; start a new battle."
                ) from None
        pending, note = False, ""
        if not record.apex_a:
            pending, note = self.pool.missing_scores(record.clip_a, record.clip_b)
        return reveal_of(record, self.store.vote_count(voter), pending=pending, note=note)

    def _record(
        self,
        battle: Battle,
        voter: str,
        now: float,
        preference: str,
        events: list[ListenEvent],
        credit: Mapping[str, float],
    ) -> VoteRecord:
        """The vote with APEX's view, the loudness served and its flags (:func:`vote_flags`)."""
        view = self._apex_view(battle) or ApexView({}, {}, None, None)
        history = [PastVote(*row) for row in self.store.recent_votes(voter, HISTORY_VOTES)]
        flags = vote_flags(
            vote=PastVote(now, preference, battle.system_a, battle.system_b),
            issued_at=battle.issued_at,
            credit=credit,
            min_listen_s=self.settings.min_listen_s,
            history=history,
            ratings=self._consensus.ratings(now),
        )
        clip_a, clip_b = self.pool[battle.clip_a], self.pool[battle.clip_b]
        served_a = self.loudness.serve(clip_a.path, clip_a.content_hash)
        served_b = self.loudness.serve(clip_b.path, clip_b.content_hash)
        return new_vote(
            dataclasses.asdict(battle),
            vote_id=uuid.uuid4().hex,
            battle_uuid=battle.battle_id,
            voter=voter,
            session=battle.session,
            timestamp=now,
            preference=preference,
            source="live",
            pool=self._pool_id,
            listen_data_a=[[e.seconds, e.server_time] for e in events if e.side == "A"],
            listen_data_b=[[e.seconds, e.server_time] for e in events if e.side == "B"],
            total_listening_time_a=credit["A"],
            total_listening_time_b=credit["B"],
            apex_a=view.apex_a or None,
            apex_b=view.apex_b or None,
            apex_p_a=view.p_a,
            apex_model_version=view.model_version,
            loudness_a=served_a.original.lufs,
            loudness_b=served_b.original.lufs,
            loudness_matched=served_a.matched and served_b.matched,
            duration_a=clip_a.duration_s,
            duration_b=clip_b.duration_s,
            instrumental_a=clip_a.is_instrumental,
            instrumental_b=clip_b.is_instrumental,
            flags=flags,
        )

    def _open_battle(self, battle_id: str, session_id: str, now: float) -> Battle:
        battle = self.store.get_battle(rules.check_battle_id(battle_id))
        session = self._ids.session(session_id)
        return rules.check_open_battle(battle, session, now, self.settings.battle_ttl_s)

    def late_reveal(self, reveal: Reveal, session_id: str | None = None) -> Reveal:
        """``reveal`` with APEX's view filled in if the clips were scored after the vote (which
        never waits for them); unchanged otherwise. The reveal comes from the client: refused
        (:class:`VoteRefused`) unless its battle is voted and, given ``session_id``, is its own."""
        battle = self.store.get_battle(rules.check_battle_id(reveal.battle_id))
        session = None if session_id is None else self._ids.session(session_id)
        battle = rules.check_own_battle(battle, session)
        if battle.status != "voted":
            raise VoteRefused("not_voted", "APEX's view of a battle is shown after your vote.")
        if not reveal.apex_pending:
            return reveal
        view = self._apex_view(battle)
        if view is None:
            pending, note = self.pool.missing_scores(battle.clip_a, battle.clip_b)
            return dataclasses.replace(reveal, apex_pending=pending, apex_note=note)
        return with_scores(reveal, view)

    def _apex_view(self, battle: Battle) -> ApexView | None:
        return apex_view(self.pool, self.scorer, battle.clip_a, battle.clip_b, self.model_version)

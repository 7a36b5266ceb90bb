"""Arena lifecycle: issue, listen, vote, reveal, and every refusal path of the rules."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from annotation.arena import Arena, BattleTicket
from annotation.pool import Clip, ClipPool
from annotation.rules import PREFERENCES, VoteRefused
from annotation.store import SQLiteVoteStore
from apex.tasks import SCORE_NAMES

SESSION, IP = "session-1", "198.51.100.7"


class Clock:
    """A settable server clock, Unix seconds."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeScorer:
    """Prefers the clip with the higher coherence; counts calls."""

    def __init__(self, fail: type[Exception] | None = None) -> None:
        self.fail = fail

    def compare(self, a, b) -> float:
        if self.fail is not None:
            raise self.fail("model crashed")
        return 0.8 if a.scores["coherence"] > b.scores["coherence"] else 0.2

    def info(self) -> dict:
        return {"model_id": "fake", "version": "1"}

    def score(self, inputs, priority=0):  # not used by the arena
        raise AssertionError


def make_pool(tmp_path: Path, *, systems=("x", "y", "z"), per_system: int = 2, scored=True):
    import numpy as np
    import soundfile as sf

    clips = []
    for s_index, system in enumerate(systems):
        for k in range(per_system):
            # Real (short) audio: the arena measures and loudness-matches what it serves.
            t = np.arange(16_000) / 16_000
            tone = (0.05 + 0.1 * s_index) * np.sin(2 * np.pi * (220 + 55 * k) * t)
            sf.write(tmp_path / f"{system}{k}.wav", tone, 16_000)
            scores = {name: 3.0 + s_index * 0.5 for name in SCORE_NAMES} if scored else {}
            clips.append(
                Clip(
                    clip_id=f"{system}{k}",
                    path=tmp_path / f"{system}{k}.wav",
                    file_name=f"{system}{k}.wav",
                    system=system,
                    prompt=f"prompt {k}",
                    is_instrumental=True,
                    duration_s=20.0,
                    scores=scores,
                    result={"scores": scores, "preference": 0.1 * s_index} if scored else None,
                )
            )
    # The fake scorer compares Clip objects, standing in for the pool's ScoreResults.
    results = {clip.clip_id: clip for clip in clips} if scored else None
    return ClipPool(clips, tmp_path, model_version="fake@1" if scored else None, results=results)


@pytest.fixture
def setup(tmp_path: Path, settings):
    settings = settings.replace(
        salt="test-salt",
        min_listen_s=5.0,
        battle_ttl_s=600.0,
        rate_limit_votes=3,
        rate_limit_window_s=100.0,
        feedback_max_chars=20,
    )
    clock = Clock()
    store = SQLiteVoteStore(settings.store_path)
    pool = make_pool(tmp_path)
    arena = Arena(settings, pool, store, FakeScorer(), clock=clock, seed=1)
    yield arena, store, clock
    store.close()


def listen_both(arena: Arena, clock: Clock, ticket: BattleTicket, seconds: float = 6.0) -> None:
    clock.now = ticket.issued_at + seconds
    arena.listen(ticket.battle_id, "A", seconds, SESSION)
    clock.now += seconds
    arena.listen(ticket.battle_id, "B", seconds, SESSION)


def test_happy_path_stores_everything_and_reveals(setup) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    # The ticket names no system: only the id, the two files, the time and the prompt.
    assert set(vars(ticket)) == {"battle_id", "audio_a", "audio_b", "issued_at", "prompt"}
    battle = store.get_battle(ticket.battle_id)
    assert ticket.prompt == battle.prompt and ticket.prompt  # the UI needs no store read
    assert battle.system_a != battle.system_b and battle.session != SESSION
    listen_both(arena, clock, ticket)
    reveal = arena.vote(
        ticket.battle_id, "A", SESSION, IP, feedback=" good ", ratings={"A": {"musicality": 4}}
    )
    assert (reveal.system_a, reveal.system_b) == (battle.system_a, battle.system_b)
    assert set(reveal.apex_a) == {*SCORE_NAMES, "preference"} and reveal.voter_votes == 1
    a, b = arena.pool[battle.clip_a], arena.pool[battle.clip_b]
    expected_pick = "A" if a.scores["coherence"] > b.scores["coherence"] else "B"
    assert reveal.apex_pick == expected_pick and reveal.apex_probability == pytest.approx(0.8)
    assert reveal.apex_agrees is (expected_pick == "A")
    row = store.votes_frame().iloc[0]
    assert row["battle_uuid"] == ticket.battle_id and row["preference"] == "A"
    assert row["total_listening_time_a"] == 6.0 and row["total_listening_time_b"] == 6.0
    assert len(row["listen_data_a"]) == 1 and row["feedback"] == "good"
    assert row["ratings_a"] == {"musicality": 4} and row["ratings_b"] is None
    assert row["source"] == "live" and row["apex_model_version"] == "fake@1"
    assert IP not in row["user_pseudonym"] and SESSION not in row["session_pseudonym"]
    assert store.get_battle(ticket.battle_id).status == "voted"


def test_tie_has_no_agreement_and_preferences_are_music_arena_s() -> None:
    assert PREFERENCES == ("A", "B", "TIE", "BOTH_BAD")


@pytest.mark.parametrize("preference", ["TIE", "BOTH_BAD"])
def test_tie_and_both_bad_reveal_without_agreement(setup, preference) -> None:
    arena, _, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    assert arena.vote(ticket.battle_id, preference, SESSION, IP).apex_agrees is None


def refused(code: str, fn, *args, **kwargs) -> VoteRefused:
    with pytest.raises(VoteRefused) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, str(info.value)
    assert len(str(info.value)) > 20  # a sentence for the person, not a bare code
    return info.value


def test_refusals_before_and_after_listening(setup) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    bid = ticket.battle_id
    refused("unknown_battle", arena.vote, "no-such-battle", "A", SESSION, IP)
    refused("wrong_session", arena.vote, bid, "A", "someone-else", IP)
    refused("wrong_session", arena.listen, bid, "A", 3.0, "someone-else")
    refused("bad_preference", arena.vote, bid, "C", SESSION, IP)
    refused("bad_side", arena.listen, bid, "C", 3.0, SESSION)
    refused("bad_listen", arena.listen, bid, "A", -1.0, SESSION)
    refused("bad_listen", arena.listen, bid, "A", float("nan"), SESSION)
    refused("feedback_too_long", arena.vote, bid, "A", SESSION, IP, feedback="x" * 21)
    refused("bad_ratings", arena.vote, bid, "A", SESSION, IP, ratings={"A": {"musicality": 6}})
    refused("bad_ratings", arena.vote, bid, "A", SESSION, IP, ratings={"A": {"vibes": 3}})
    refused("bad_ratings", arena.vote, bid, "A", SESSION, IP, ratings={"C": {"clarity": 3}})
    refused("bad_ratings", arena.vote, bid, "A", SESSION, IP, ratings={"A": {"clarity": 2.5}})
    # A client claiming a minute of listening two seconds after issue is not believed.
    clock.now = ticket.issued_at + 2.0
    arena.listen(bid, "A", 60.0, SESSION)
    arena.listen(bid, "B", 60.0, SESSION)
    err = refused("not_listened", arena.vote, bid, "A", SESSION, IP)
    assert "3.0 s more of clip A" in str(err)
    # Time passing alone is not listening either: B was only ever reported at 2 s.
    clock.now = ticket.issued_at + 30.0
    arena.listen(bid, "A", 10.0, SESSION)
    err = refused("not_listened", arena.vote, bid, "A", SESSION, IP)
    assert "clip B" in str(err) and "clip A" not in str(err)
    assert store.counts()["votes"] == 0  # nothing stored for any refusal
    arena.listen(bid, "B", 10.0, SESSION)
    arena.vote(bid, "B", SESSION, IP)
    refused("already_voted", arena.vote, bid, "A", SESSION, IP)
    refused("already_voted", arena.listen, bid, "A", 1.0, SESSION)
    assert store.counts()["votes"] == 1


def test_late_reveal_refuses_a_battle_not_voted_or_not_the_sessions(setup) -> None:
    """The reveal comes back from the client: a forged one must not show APEX's view early."""
    import dataclasses

    arena, _, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    reveal = arena.vote(ticket.battle_id, "A", SESSION, IP)
    pending = dataclasses.replace(reveal, apex_a={}, apex_b={}, apex_pick=None, apex_pending=True)
    open_ticket = arena.new_battle(SESSION, IP)  # scored clips, no vote yet
    forged = dataclasses.replace(pending, battle_id=open_ticket.battle_id)
    refused("not_voted", arena.late_reveal, forged)
    refused("not_voted", arena.late_reveal, forged, SESSION)
    assert arena.late_reveal(pending, SESSION).apex_a == reveal.apex_a  # the voter's own
    refused("wrong_session", arena.late_reveal, pending, "someone-else")
    refused("unknown_battle", arena.late_reveal, dataclasses.replace(pending, battle_id="nope"))
    refused("unknown_battle", arena.late_reveal, dataclasses.replace(pending, battle_id=[1]))


def test_expired_battle_is_refused(setup) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    clock.now = ticket.issued_at + arena.settings.battle_ttl_s + 1
    refused("expired", arena.vote, ticket.battle_id, "A", SESSION, IP)
    refused("expired", arena.listen, ticket.battle_id, "A", 1.0, SESSION)
    assert store.counts()["votes"] == 0


def test_rate_limit_says_when_to_come_back(setup) -> None:
    arena, store, clock = setup
    start = clock.now
    for _ in range(3):
        ticket = arena.new_battle(SESSION, IP)
        listen_both(arena, clock, ticket)
        arena.vote(ticket.battle_id, "A", SESSION, IP)
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    err = refused("rate_limited", arena.vote, ticket.battle_id, "A", SESSION, IP)
    first_vote = store.votes_frame()["timestamp"].min()
    assert err.retry_after_s == pytest.approx(first_vote + 100.0 - clock.now)
    assert f"vote again in {math.ceil(err.retry_after_s)} s" in str(err)
    # Another session from the same IP is the same voter: still limited.
    other = arena.new_battle("session-2", IP)
    clock.now = other.issued_at + 6
    arena.listen(other.battle_id, "A", 6, "session-2")
    arena.listen(other.battle_id, "B", 6, "session-2")
    refused("rate_limited", arena.vote, other.battle_id, "A", "session-2", IP)
    # Once the window has moved on, the same battle can be voted.
    clock.now = first_vote + 100.0 + 0.001
    assert arena.vote(ticket.battle_id, "A", SESSION, IP).voter_votes == 4
    assert clock.now - start > 100


def test_session_never_hears_a_pair_twice(tmp_path: Path, settings) -> None:
    settings = settings.replace(salt="s")
    pool = make_pool(tmp_path, systems=("x", "y"), per_system=1)
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, seed=0)
        ticket = arena.new_battle(SESSION)
        battle = store.get_battle(ticket.battle_id)
        assert {battle.clip_a, battle.clip_b} == {"x0", "y0"}
        refused("no_pair", arena.new_battle, SESSION)
        arena.new_battle("fresh-session")  # another session still gets it


def test_works_without_a_scorer_or_scores(tmp_path: Path, settings) -> None:
    settings = settings.replace(salt="s", min_listen_s=0.0)
    pool = make_pool(tmp_path, scored=False)
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, seed=0)
        ticket = arena.new_battle(SESSION, IP)
        reveal = arena.vote(ticket.battle_id, "A", SESSION, IP)
        assert reveal.apex_a == {} and reveal.apex_pick is None and reveal.apex_agrees is None
        row = store.votes_frame().iloc[0]
        assert row["apex_a"] is None and row["apex_model_version"] is None


def test_a_failing_model_never_loses_the_vote(setup) -> None:
    arena, store, clock = setup
    from apex.checkpoints import CheckpointError

    arena.scorer = FakeScorer(fail=CheckpointError)
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    reveal = arena.vote(ticket.battle_id, "A", SESSION, IP)
    assert reveal.apex_pick is None and store.counts()["votes"] == 1


def test_a_bug_in_the_models_compare_surfaces(setup) -> None:
    arena, store, clock = setup
    arena.scorer = FakeScorer(fail=RuntimeError)  # not a model error the arena expects
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    with pytest.raises(RuntimeError, match="model crashed"):
        arena.vote(ticket.battle_id, "A", SESSION, IP)
    assert store.counts()["votes"] == 0


def test_concurrent_votes_on_one_battle_store_exactly_one(setup) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    outcomes: list[str] = []

    def vote() -> None:
        try:
            arena.vote(ticket.battle_id, "A", SESSION, IP)
            outcomes.append("ok")
        except VoteRefused as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=vote) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1 and set(outcomes) <= {"ok", "already_voted"}
    assert store.counts()["votes"] == 1


def test_parallel_votes_of_one_voter_respect_the_rate_limit(setup) -> None:
    arena, store, clock = setup
    tickets = [arena.new_battle(SESSION, IP) for _ in range(6)]
    clock.now = max(t.issued_at for t in tickets) + 6.0
    for ticket in tickets:
        arena.listen(ticket.battle_id, "A", 6.0, SESSION)
        arena.listen(ticket.battle_id, "B", 6.0, SESSION)
    outcomes: list[str] = []

    def vote(ticket: BattleTicket) -> None:
        try:
            arena.vote(ticket.battle_id, "TIE", SESSION, IP)
            outcomes.append("ok")
        except VoteRefused as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=vote, args=(t,)) for t in tickets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["rate_limited"] * 3
    assert store.counts()["votes"] == 3


def test_pair_counts_follow_new_battles_between_store_reads(setup) -> None:
    arena, store, _ = setup
    for n in range(5):
        arena.new_battle(f"session-{n}", IP)
        # Counted in memory as battles are issued, equal to a fresh count from the store.
        assert arena._pairs.counts() == store.pair_counts()
    assert sum(store.pair_counts().values()) == 5


# ---------------------------------------------------------------------- hardening
def test_battle_issue_is_rate_limited_per_voter(setup) -> None:
    arena, store, clock = setup
    arena.settings = arena.settings.replace(rate_limit_battles=5)
    for _ in range(5):
        arena.new_battle(SESSION, IP)
        clock.now += 1
    battles = store.counts()["battles"]
    err = refused("rate_limited", arena.new_battle, "session-2", IP)  # same IP: same voter
    assert f"start a new battle in {math.ceil(err.retry_after_s)} s" in str(err)
    assert "started 5 battles" in str(err) and err.retry_after_s == pytest.approx(95.0)
    assert store.counts()["battles"] == battles  # a refused issue stores nothing
    arena.new_battle("session-3", "203.0.113.9")  # another voter is not limited
    clock.now += 100
    arena.new_battle(SESSION, IP)  # the window moved on


def test_listen_reports_are_capped_per_battle_and_per_voter(setup) -> None:
    arena, store, clock = setup
    arena.settings = arena.settings.replace(listen_reports_per_battle=4, rate_limit_listens=6)
    ticket = arena.new_battle(SESSION, IP)
    for n in range(4):
        clock.now += 1
        arena.listen(ticket.battle_id, "AB"[n % 2], n + 1.0, SESSION, IP)
    err = refused("rate_limited", arena.listen, ticket.battle_id, "A", 9.0, SESSION, IP)
    assert "4 listening reports" in str(err) and "start a new battle" in str(err)
    assert len(store.listen_events(ticket.battle_id)) == 4
    other = arena.new_battle(SESSION, IP)
    clock.now += 1
    arena.listen(other.battle_id, "A", 1.0, SESSION, IP)
    arena.listen(other.battle_id, "B", 1.0, SESSION, IP)
    err = refused("rate_limited", arena.listen, other.battle_id, "A", 2.0, SESSION, IP)
    assert "sent 6 listening reports" in str(err) and err.retry_after_s > 0
    assert len(store.listen_events(other.battle_id)) == 2


@pytest.mark.parametrize("seconds", ["abc", None, [1], "5", True, {"s": 1}, float("nan")])
def test_listen_refuses_anything_but_a_number(setup, seconds) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    clock.now += 6
    err = refused("bad_listen", arena.listen, ticket.battle_id, "A", seconds, SESSION)
    assert "JSON number" in str(err)
    assert store.listen_events(ticket.battle_id) == []


@pytest.mark.parametrize("battle_id", [None, [1], {"x": 1}, 7, "x" * 100])
def test_bad_battle_ids_and_sides_are_refused_plainly(setup, battle_id) -> None:
    arena = setup[0]
    refused("unknown_battle", arena.listen, battle_id, "A", 1.0, SESSION)
    refused("unknown_battle", arena.vote, battle_id, "A", SESSION, IP)
    ticket = arena.new_battle(SESSION, IP)
    for side in ([1], None, {"A": 1}):
        refused("bad_side", arena.listen, ticket.battle_id, side, 1.0, SESSION)
    for preference in ([1], None, {"A": 1}, 1):
        refused("bad_preference", arena.vote, ticket.battle_id, preference, SESSION, IP)


@pytest.mark.parametrize(
    "ratings,match",
    [
        ({"A": 5}, "ratings of A must map"),
        ([1, 2], "ratings must be an object"),
        ("x", "ratings must be an object"),
        ({"A": {"coherence": "4"}}, "whole number"),
        ({"A": {"coherence": True}}, "whole number"),
        ({"C": {"coherence": 4}}, "side 'C'"),
    ],
)
def test_malformed_ratings_are_refused_and_nothing_is_stored(setup, ratings, match) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    with pytest.raises(VoteRefused, match=match):
        arena.vote(ticket.battle_id, "A", SESSION, IP, ratings=ratings)
    assert store.counts()["votes"] == 0


@pytest.mark.parametrize("feedback", ["\ud800", "ok \udfff", 5, ["a"]])
def test_unstorable_feedback_is_refused(setup, feedback) -> None:
    arena, store, clock = setup
    ticket = arena.new_battle(SESSION, IP)
    listen_both(arena, clock, ticket)
    refused("bad_feedback", arena.vote, ticket.battle_id, "A", SESSION, IP, feedback=feedback)
    assert store.counts()["votes"] == 0
    arena.vote(ticket.battle_id, "A", SESSION, IP, feedback="fine")  # the battle is still open

"""Vote-quality flags: each rule alone, then scripted voters through the real arena."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from annotation import flags
from annotation.arena import Arena
from annotation.export import release_frame
from annotation.flags import PastVote
from annotation.store import SQLiteVoteStore
from annotation.voter_sim import SimClock, run_voters, write_sim_pool

STRENGTHS = {"s0": 0.0, "s1": 0.6, "s2": 1.2, "s3": 1.8, "s4": 2.4}  # nats


def rules(credit=None, elapsed_s=60.0, min_listen_s=5.0, past_times=(), now=1000.0) -> list[str]:
    """The flags :func:`flags.vote_flags` gives one A vote with no streak and no board."""
    history = [PastVote(t, "B" if k % 2 else "A", "x", "y") for k, t in enumerate(past_times)]
    got = flags.vote_flags(
        vote=PastVote(now, "TIE", "x", "y"), issued_at=now - elapsed_s,
        credit=credit or {"A": 30.0, "B": 30.0}, min_listen_s=min_listen_s,
        history=history, ratings=None,
    )  # fmt: skip
    return flags.split_flags(got)


def test_barely_listened_needs_both_clips_under_the_bar() -> None:
    # bar: 5 + max(1, 1.25) = 6.25
    assert "barely_listened" in rules({"A": 5.5, "B": 6.0}, min_listen_s=5.0)
    assert "barely_listened" not in rules({"A": 5.5, "B": 6.5}, min_listen_s=5.0)
    assert "barely_listened" not in rules({"A": 0.0, "B": 0.0}, min_listen_s=0.0)  # no minimum


def test_too_fast_means_the_clips_overlapped() -> None:
    assert "too_fast" in rules({"A": 6.0, "B": 6.0}, elapsed_s=7.0)  # 12 s of audio in 7 s
    assert "too_fast" not in rules({"A": 6.0, "B": 6.0}, elapsed_s=12.5)


def test_streak_counts_the_run_that_ends_the_sequence() -> None:
    assert flags.streak(["B", "A", "A", "A"]) == 3
    assert flags.streak(["A", "A", "TIE"]) == 0 and flags.streak([]) == 0


def test_contrarian_ratio_known_values() -> None:
    # 200 points apart: c = 1 / (1 + 10^(-200/400)) = 0.7597.
    board = {"x": 1100.0, "y": 900.0}
    c = 1 / (1 + 10 ** (-0.5))
    against = PastVote(0.0, "B", "x", "y")
    assert flags.contrarian_log_ratio([against], board) == pytest.approx(math.log(2 * c))
    follow = PastVote(0.0, "A", "x", "y")
    assert flags.contrarian_log_ratio([follow], board) == pytest.approx(math.log(2 * (1 - c)))
    ignored = [PastVote(0.0, "TIE", "x", "y"), PastVote(0.0, "A", "x", "unrated")]
    assert flags.contrarian_log_ratio(ignored, board) == 0.0


def test_coin_flip_voters_rarely_cross_the_contrarian_bound() -> None:
    # Ville's inequality: under the coin-flip null the ratio ever reaches 1/alpha with
    # probability <= alpha. Check it by simulation (200 votes each, 4000 voters).
    rng = np.random.default_rng(0)
    c = min(flags.CONSENSUS_CAP, 1 / (1 + 10 ** (-0.5)))
    steps = np.where(rng.random((4000, 200)) < 0.5, math.log(2 * c), math.log(2 * (1 - c)))
    crossed = (np.cumsum(steps, axis=1) >= -math.log(flags.CONTRARIAN_ALPHA)).any(axis=1)
    assert crossed.mean() <= 2 * flags.CONTRARIAN_ALPHA


def test_burst_is_more_than_one_sequential_listener_can_cast() -> None:
    now = 10_000.0
    eleven = [now - 10.0 * k for k in range(11, 0, -1)]  # 11 earlier votes, one every 10 s
    assert "burst" not in rules(past_times=eleven[1:], now=now)  # 11 votes in 120 s: possible
    assert "burst" in rules(past_times=[*eleven, now - 2.0, now - 1.0], now=now)


def test_vote_flags_joins_reasons_in_order() -> None:
    vote = PastVote(100.0, "A", "x", "y")
    history = [PastVote(float(t), "A", "x", "y") for t in range(10)]
    got = flags.vote_flags(
        vote=vote, issued_at=95.0, credit={"A": 5.1, "B": 5.1}, min_listen_s=5.0,
        history=history, ratings=None,
    )  # fmt: skip
    assert got == "barely_listened,too_fast,same_side_streak"
    assert flags.split_flags(got) == ["barely_listened", "too_fast", "same_side_streak"]


def test_flag_summary() -> None:
    votes = pd.DataFrame({"flags": ["", "too_fast", "too_fast,burst", ""]})
    summary = flags.flag_summary(votes)
    assert summary["flagged"] == 2 and summary["too_fast"] == 2 and summary["burst"] == 1


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from apex.settings import Settings

    tmp = tmp_path_factory.mktemp("voters")
    settings = Settings.from_env({}, data_dir=tmp / "data", salt="sim", min_listen_s=5.0)
    pool = write_sim_pool(tmp / "pool", tuple(STRENGTHS))
    clock = SimClock()
    with SQLiteVoteStore(settings.store_path) as store:
        arena = Arena(settings, pool, store, clock=clock, seed=0)
        kinds = {"honest": 20, "always_a": 2, "too_fast": 2, "contrarian": 2}
        return run_voters(arena, clock, STRENGTHS, kinds, votes_per_voter=30, seed=1)


def reasons(votes: pd.DataFrame, kind: str) -> list[list[str]]:
    return [flags.split_flags(f) for f in votes.loc[votes["kind"] == kind, "flags"]]


def test_scripted_voters_are_flagged_and_honest_ones_almost_never(simulated) -> None:
    honest = reasons(simulated, "honest")
    assert len(honest) == 600
    false_flag_rate = sum(bool(r) for r in honest) / len(honest)
    assert false_flag_rate <= 0.02, false_flag_rate
    too_fast = reasons(simulated, "too_fast")
    assert too_fast and all("too_fast" in r for r in too_fast)
    for name, votes in simulated[simulated["kind"] == "always_a"].groupby("user_pseudonym"):
        marks = [flags.split_flags(f) for f in votes["flags"]]
        # Every vote from the 10th on ends a run of 10 or more A votes.
        assert all("same_side_streak" in r for r in marks[flags.STREAK_LENGTH - 1 :]), name
        assert not any("same_side_streak" in r for r in marks[: flags.STREAK_LENGTH - 1])
    for name, votes in simulated[simulated["kind"] == "contrarian"].groupby("user_pseudonym"):
        assert all("contrarian" in flags.split_flags(f) for f in votes["flags"].iloc[-3:]), name


def test_flagged_votes_are_kept_and_published(simulated) -> None:
    assert len(simulated) == 26 * 30  # nothing deleted
    released = release_frame(simulated)
    assert (released["flags"] == simulated["flags"]).all()
    assert (released["flags"] != "").sum() > 60

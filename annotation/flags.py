"""Vote-quality flags: reasons a vote may be unreliable, from what the server saw when it was cast.

Flags are evidence, never a verdict: a flagged vote is stored and published like any other (the
``flags`` column), and only the boards choose to leave flagged votes out (by default, with a
toggle to count them). Each reason is computed at vote time from server-side facts alone (the
battle's issue time, the credited listening, the voter's earlier votes and the current board),
so a client cannot talk its way out of one.

Reasons (:data:`FLAG_REASONS`):

- ``barely_listened``: both clips credited less than the minimum listen plus
  :data:`BARELY_MARGIN` (fraction of the minimum, at least one second).
- ``too_fast``: the vote came sooner after the battle was issued than the credited listening of
  A and B one after the other takes (with :data:`TOO_FAST_SLACK_S`): the clips were played over
  each other, or the client's reports are not a listening.
- ``same_side_streak``: this vote ends a run of :data:`STREAK_LENGTH` or more votes for the same
  side. An honest voter's side is a coin flip (sides are randomised), so a run of 10 ends a
  given vote with probability 2 * 2^-10 = 0.2 %.
- ``contrarian``: the voter's picks go against the board's favourite far more often than a coin
  flip would. In the spirit of the anomalous-user test of Chatbot Arena (Chiang et al. 2024,
  arXiv 2403.04132, sec. 5: per-user evidence accumulated vote by vote), but as a likelihood
  ratio: with ``c`` the board's probability that its favourite wins a battle, the alternative
  "contrarian" (picks the favourite with probability ``1 - c``) is weighed against the null
  "coin flip" (1/2). Under the null the product of the ratios is a martingale, so by Ville's
  inequality it ever reaches ``1/alpha`` with probability at most ``alpha`` however many votes
  the voter casts (:data:`CONTRARIAN_ALPHA`); an honest voter, who agrees with the board more
  often than a coin flip, crosses even more rarely.
- ``burst``: more votes from this pseudonym within :data:`BURST_WINDOW_S` than one listener
  could cast hearing each clip for the minimum in turn (one voter behind many sessions or tabs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from annotation.imports import select_votes
from annotation.ratings import board_rows, fit_bradley_terry
from annotation.refreshing import Refreshing
from apex.tasks import DECISIVE, SIDES

FLAG_REASONS: tuple[str, ...] = (
    "barely_listened",
    "too_fast",
    "same_side_streak",
    "contrarian",
    "burst",
)
BARELY_MARGIN = 0.25
TOO_FAST_SLACK_S = 2.0
STREAK_LENGTH = 10
CONTRARIAN_ALPHA = 1e-3
#: The board's win probabilities are capped here: one vote against a near-certain favourite
#: must not weigh as if the board were certain (its ratings are estimates).
CONSENSUS_CAP = 0.95
BURST_WINDOW_S = 120.0
#: Earlier votes of the voter looked at (streaks and the contrarian test).
HISTORY_VOTES = 500
_POINTS_PER_NAT = 400.0 / math.log(10.0)


@dataclass(frozen=True)
class PastVote:
    """One earlier vote of the same voter, as the store returns it (``timestamp``: Unix s)."""

    timestamp: float
    preference: str
    system_a: str
    system_b: str


def barely_listened(credit: Mapping[str, float], min_listen_s: float) -> bool:
    """Both sides credited less than the minimum plus the margin (never when no minimum)."""
    if min_listen_s <= 0:
        return False
    bar = min_listen_s + max(1.0, BARELY_MARGIN * min_listen_s)
    return all(credit.get(side, 0.0) < bar for side in SIDES)


def too_fast(credit: Mapping[str, float], elapsed_s: float) -> bool:
    """Voted sooner after issue than hearing the credited A and B in turn takes."""
    return elapsed_s + TOO_FAST_SLACK_S < sum(credit.get(side, 0.0) for side in SIDES)


def streak(preferences: Sequence[str]) -> int:
    """Length of the run of identical A/B votes that ends the sequence (0 if it ends otherwise)."""
    if not preferences or preferences[-1] not in DECISIVE:
        return 0
    run = 0
    for value in reversed(preferences):
        if value != preferences[-1]:
            break
        run += 1
    return run


def contrarian_log_ratio(votes: Sequence[PastVote], ratings: Mapping[str, float]) -> float:
    """Log likelihood ratio "contrarian" vs "coin flip" of a voter's A/B votes (see module doc).

    Args:
        votes: the voter's votes (any order); ties, both-bad and unrated systems add nothing.
        ratings: the board, system -> rating (Elo points, 400/ln 10 per nat).

    Returns:
        The sum over votes of ``log(2c)`` for a pick against the favourite and ``log(2(1-c))``
        for a pick of it; positive values lean contrarian.
    """
    total = 0.0
    for vote in votes:
        if vote.preference not in DECISIVE:
            continue
        ra, rb = ratings.get(vote.system_a), ratings.get(vote.system_b)
        if ra is None or rb is None or ra == rb:
            continue
        c = min(CONSENSUS_CAP, 1.0 / (1.0 + math.exp(-abs(ra - rb) / _POINTS_PER_NAT)))
        favourite = "A" if ra > rb else "B"
        total += math.log(2.0 * (1.0 - c)) if vote.preference == favourite else math.log(2.0 * c)
    return total


def burst(past_times: Sequence[float], now: float, min_listen_s: float) -> bool:
    """More votes (this one included) in the window than one sequential listener could cast."""
    most = BURST_WINDOW_S / (2.0 * max(min_listen_s, 1.0))
    recent = sum(1 for t in past_times if t > now - BURST_WINDOW_S)
    return recent + 1 > most


def vote_flags(
    *,
    vote: PastVote,
    issued_at: float,
    credit: Mapping[str, float],
    min_listen_s: float,
    history: Sequence[PastVote],
    ratings: Mapping[str, float] | None,
) -> str:
    """The flags of one vote, comma-separated in :data:`FLAG_REASONS` order ("" when none).

    Args:
        vote: the vote being cast (``timestamp`` = now).
        issued_at: when its battle was issued, Unix seconds.
        credit: listening the server credits, seconds per side.
        min_listen_s: the arena's minimum listen per clip, seconds.
        history: the same voter's earlier votes, oldest first.
        ratings: the current board (system -> Elo points), or None before there is one.
    """
    reasons = []
    if barely_listened(credit, min_listen_s):
        reasons.append("barely_listened")
    if too_fast(credit, vote.timestamp - issued_at):
        reasons.append("too_fast")
    if streak([v.preference for v in (*history, vote)]) >= STREAK_LENGTH:
        reasons.append("same_side_streak")
    if ratings and contrarian_log_ratio([*history, vote], ratings) >= -math.log(CONTRARIAN_ALPHA):
        reasons.append("contrarian")
    if burst([v.timestamp for v in history], vote.timestamp, min_listen_s):
        reasons.append("burst")
    return ",".join(reasons)


def split_flags(flags: str | None) -> list[str]:
    """``"too_fast,burst"`` -> ``["too_fast", "burst"]`` ("" or None -> [])."""
    return [f for f in (flags or "").split(",") if f]


def select_unflagged(votes: pd.DataFrame, *, include_flagged: bool = False) -> pd.DataFrame:
    """The votes a board counts: without flagged ones unless ``include_flagged``.

    Votes without a ``flags`` column (older tables) count as unflagged.
    """
    if include_flagged or "flags" not in votes.columns or votes.empty:
        return votes
    return votes[votes["flags"].fillna("").astype(str) == ""]


def select_board_votes(
    votes: pd.DataFrame,
    *,
    board: str = "all",
    include_flagged: bool = False,
    signed_in_only: bool = False,
    include_imported: bool = False,
) -> tuple[pd.DataFrame, int]:
    """The votes one leaderboard counts, and how many flagged votes it left out.

    In this order: by source (:func:`annotation.imports.select_votes`: imported votes only
    with ``include_imported``), by board (:func:`annotation.ratings.board_rows`: all,
    instrumental or vocal prompts), signed-in voters only when ``signed_in_only``, then without
    flagged votes unless ``include_flagged`` (:func:`select_unflagged`).

    Args:
        votes: :meth:`VoteStore.votes_frame` rows.

    Returns:
        ``(counted, flagged_left_out)``: the rows the board fits on, and the number of flagged
        votes of this board that were left out (0 with ``include_flagged``).

    Raises:
        ValueError: an unknown board, or a column the selection needs is missing.
    """
    votes = board_rows(select_votes(votes, include_imported=include_imported), board)
    if signed_in_only and len(votes):
        votes = votes[votes["signed_in"].astype(bool)]
    counted = select_unflagged(votes, include_flagged=include_flagged)
    return counted, len(votes) - len(counted)


def flag_summary(votes: pd.DataFrame) -> dict[str, int]:
    """``{"flagged": n, <reason>: n, ...}``: flagged votes and how many carry each reason."""
    counts = dict.fromkeys(("flagged", *FLAG_REASONS), 0)
    if "flags" not in votes.columns:
        return counts
    for flags in votes["flags"].fillna("").astype(str):
        reasons = split_flags(flags)
        counts["flagged"] += bool(reasons)
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


class Consensus:
    """The board the ``contrarian`` test compares voters with: a plain Bradley-Terry fit (Music
    Arena's C=1) of the store's own, unflagged votes, refitted at most every ``refresh_s`` and
    only after new votes, on a background thread (:class:`annotation.refreshing.Refreshing`): a
    vote reads the last fit and never waits for one, so its latency does not grow with the store.

    Args:
        store: the vote store (``votes_frame()``, and ``max_row_id()`` to see new votes).
        refresh_s: seconds of the caller's clock between the starts of two fits.
    """

    def __init__(self, store: Any, *, refresh_s: float = 60.0) -> None:
        self._store = store
        self._fit = Refreshing(
            self._compute,
            version=store.max_row_id,
            min_interval_s=refresh_s,
            clock=time.time,
        )

    def _compute(self) -> dict[str, float] | None:
        votes = select_unflagged(select_votes(self._store.votes_frame()))
        if not len(votes):
            return None
        table = fit_bradley_terry(votes, l2=1.0)
        return {str(k): float(v) for k, v in table["rating"].items()} or None

    def ratings(self, now: float | None = None, *, wait_s: float = 0.0) -> dict[str, float] | None:
        """System -> Elo points as of the last fit (None before the first, or with no votes).

        Args:
            now: the caller's time, Unix seconds (default now).
            wait_s: wait up to this long for the first fit (tests; votes never wait).
        """
        return self._fit.get(now=now, wait_s=wait_s)

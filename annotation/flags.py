"""Vote-quality flags: reasons a vote may be unreliable, from what the server saw when it was cast.

Flags are evidence, not a verdict: a flagged vote is stored and published (``flags``); boards leave
it out unless asked. Each reason (:data:`FLAG_REASONS`) comes from server-side facts alone (issue
time, credited listening, the voter's earlier votes, the board), so a client cannot avoid one."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from annotation.ratings import POINTS_PER_NAT
from apex.tasks import DECISIVE, SIDES

FLAG_REASONS = ("barely_listened", "too_fast", "same_side_streak", "contrarian", "burst")
BARELY_MARGIN = 0.25
TOO_FAST_SLACK_S = 2.0
STREAK_LENGTH = 10  # an honest voter's side is a coin flip: 10 in a row is 0.2 % likely
CONTRARIAN_ALPHA = 1e-3
#: The board's win probabilities are capped here: one vote against a near-certain favourite
#: must not weigh as if the board were certain (its ratings are estimates).
CONSENSUS_CAP = 0.95
BURST_WINDOW_S = 120.0
HISTORY_VOTES = 500  # earlier votes of the voter looked at (streaks and the contrarian test)


@dataclass(frozen=True)
class PastVote:
    """One earlier vote of the same voter, as the store returns it (``timestamp``: Unix s)."""

    timestamp: float
    preference: str
    system_a: str
    system_b: str


def streak(preferences: Sequence[str]) -> int:
    """Length of the run of identical A/B votes that ends the sequence (0 if it ends otherwise)."""
    last = preferences[-1] if preferences else None
    if last not in DECISIVE:
        return 0
    runs = (n for n, value in enumerate(reversed(preferences)) if value != last)
    return next(runs, len(preferences))


def contrarian_log_ratio(votes: Sequence[PastVote], ratings: Mapping[str, float]) -> float:
    """Log likelihood ratio "contrarian" vs "coin flip" of a voter's A/B votes.

    After Chatbot Arena's anomalous-user test (arXiv 2403.04132, sec. 5): with ``c`` the board's
    probability that its favourite wins, the contrarian picks it with probability ``1 - c``, the
    coin flip with 1/2. Under the coin flip the ratio is a martingale, so by Ville's inequality it
    ever reaches ``1/alpha`` (:data:`CONTRARIAN_ALPHA`) with probability at most ``alpha``.

    The sum over ``votes`` (ties, both-bad and unrated systems add nothing; ``ratings`` in Elo
    points) of ``log(2c)`` per pick against the favourite, ``log(2(1-c))`` per pick of it.
    """
    total = 0.0
    for vote in votes:
        if vote.preference not in DECISIVE:
            continue
        ra, rb = ratings.get(vote.system_a), ratings.get(vote.system_b)
        if ra is None or rb is None or ra == rb:
            continue
        c = min(CONSENSUS_CAP, 1.0 / (1.0 + math.exp(-abs(ra - rb) / POINTS_PER_NAT)))
        favourite = "A" if ra > rb else "B"
        total += math.log(2.0 * (1.0 - c)) if vote.preference == favourite else math.log(2.0 * c)
    return total


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

    ``vote``: the vote being cast (``timestamp``: now); ``issued_at``: its battle's issue time
    (Unix seconds); ``credit``: listening credited per side and ``min_listen_s`` the minimum per
    clip (seconds); ``history``: the voter's earlier votes, oldest first; ``ratings``: the board
    (system -> Elo points), None before there is one.
    """
    listened = sum(credit.get(side, 0.0) for side in SIDES)
    bar = min_listen_s + max(1.0, BARELY_MARGIN * min_listen_s)
    recent = sum(1 for v in history if v.timestamp > vote.timestamp - BURST_WINDOW_S)
    hits = {
        # Both sides credited under the minimum plus the margin (never when there is no minimum).
        "barely_listened": min_listen_s > 0 and all(credit.get(s, 0.0) < bar for s in SIDES),
        # Voted sooner after issue than hearing the credited A and B in turn takes.
        "too_fast": vote.timestamp - issued_at + TOO_FAST_SLACK_S < listened,
        "same_side_streak": streak([v.preference for v in (*history, vote)]) >= STREAK_LENGTH,
        "contrarian": bool(ratings)
        and contrarian_log_ratio([*history, vote], ratings) >= -math.log(CONTRARIAN_ALPHA),
        # More votes (this one included) in the window than one sequential listener could cast.
        "burst": recent + 1 > BURST_WINDOW_S / (2.0 * max(min_listen_s, 1.0)),
    }
    return ",".join(reason for reason in FLAG_REASONS if hits[reason])


def split_flags(flags: str | None) -> list[str]:
    """``"too_fast,burst"`` -> ``["too_fast", "burst"]`` ("" or None -> [])."""
    return [f for f in (flags or "").split(",") if f]


def flag_summary(votes: pd.DataFrame) -> dict[str, int]:
    """``{"flagged": n, <reason>: n, ...}``: flagged votes and how many carry each reason."""
    counts = dict.fromkeys(("flagged", *FLAG_REASONS), 0)
    for flags in votes.get("flags", pd.Series(dtype=str)).fillna("").astype(str):
        reasons = split_flags(flags)
        counts["flagged"] += bool(reasons)
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts

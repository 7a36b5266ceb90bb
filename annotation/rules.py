"""Vote rules: what a valid vote looks like and the one error every refusal raises.

Pure functions with no store and no clock of their own: the arena passes server-side facts (the
battle's issue time, the listen events it recorded, the voter's recent vote times) and the current
time, so every rule can be tested alone and the client's word is never taken for anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from apex.tasks import AESTHETICS

#: Preference values, Music Arena's vocabulary. TIE counts half a win each way in the ratings;
#: BOTH_BAD is kept in the data but left out of the ratings.
PREFERENCES: tuple[str, ...] = ("A", "B", "TIE", "BOTH_BAD")
SIDES: tuple[str, ...] = ("A", "B")
#: Per-clip ratings use SongEval's 1-5 scale on the five aesthetic dimensions.
RATING_RANGE: tuple[int, int] = (1, 5)

#: Machine-readable codes of :class:`VoteRefused`, one per refusal path.
REFUSAL_CODES: tuple[str, ...] = (
    "unknown_battle",
    "expired",
    "wrong_session",
    "already_voted",
    "not_listened",
    "rate_limited",
    "bad_preference",
    "bad_side",
    "bad_listen",
    "feedback_too_long",
    "bad_ratings",
    "no_pair",
)


class VoteRefused(Exception):
    """A battle action was refused. ``str(exc)`` is the message to show the person.

    Attributes:
        code: one of :data:`REFUSAL_CODES`, for programs.
        message: what was wrong and what to do, for people.
        retry_after_s: seconds until the action can succeed (rate limits), else None.
    """

    def __init__(self, code: str, message: str, *, retry_after_s: float | None = None) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}; use one of {REFUSAL_CODES}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ListenEvent:
    """One play-progress report, as recorded by the server.

    Attributes:
        side: ``"A"`` or ``"B"``.
        seconds: the client's claim of how long that clip has been played in total, seconds.
        server_time: when the server received the report, Unix seconds.
    """

    side: str
    seconds: float
    server_time: float


def check_preference(preference: str) -> str:
    """Return the preference if it is one of :data:`PREFERENCES`; refuse otherwise."""
    if preference not in PREFERENCES:
        raise VoteRefused(
            "bad_preference",
            f"preference {preference!r} is not valid; choose one of {', '.join(PREFERENCES)}.",
        )
    return preference


def check_side(side: str) -> str:
    """Return the side if it is ``"A"`` or ``"B"``; refuse otherwise."""
    if side not in SIDES:
        raise VoteRefused("bad_side", f"side {side!r} is not valid; use 'A' or 'B'.")
    return side


def check_listen_seconds(seconds: float) -> float:
    """Return a play-progress value in seconds if it is a finite number ≥ 0; refuse otherwise."""
    is_number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not is_number or not math.isfinite(seconds) or seconds < 0:
        raise VoteRefused(
            "bad_listen", f"listened seconds must be a finite number ≥ 0, got {seconds!r}."
        )
    return float(seconds)


def check_feedback(feedback: str | None, max_chars: int) -> str | None:
    """Return stripped feedback (None when empty); refuse text longer than ``max_chars``."""
    if feedback is None:
        return None
    text = str(feedback).strip()
    if len(text) > max_chars:
        raise VoteRefused(
            "feedback_too_long",
            f"feedback is {len(text)} characters; the limit is {max_chars}. "
            "Shorten it and vote again.",
        )
    return text or None


def check_ratings(
    ratings: Mapping[str, Mapping[str, int]] | None,
) -> dict[str, dict[str, int]] | None:
    """Validate optional per-clip ratings ``{"A": {dimension: 1-5}, "B": {...}}``.

    Dimensions are the five aesthetics of :data:`apex.tasks.AESTHETICS`; any subset may be given.

    Returns:
        A clean copy with int values, or None when nothing was rated.
    """
    if not ratings:
        return None
    low, high = RATING_RANGE
    clean: dict[str, dict[str, int]] = {}
    for side, dims in ratings.items():
        if side not in SIDES:
            raise VoteRefused("bad_ratings", f"ratings side {side!r} is not valid; use 'A' or 'B'.")
        for dim, value in (dims or {}).items():
            if dim not in AESTHETICS:
                raise VoteRefused(
                    "bad_ratings",
                    f"unknown rating dimension {dim!r}; rate any of {', '.join(AESTHETICS)}.",
                )
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if not is_int and not (isinstance(value, float) and value.is_integer()):
                raise VoteRefused("bad_ratings", f"rating {dim}={value!r} must be a whole number.")
            if not low <= value <= high:
                raise VoteRefused(
                    "bad_ratings",
                    f"rating {dim}={value} is outside {low}-{high}; pick a whole number.",
                )
            clean.setdefault(side, {})[dim] = int(value)
    return clean or None


def listened_seconds(events: Iterable[ListenEvent], issued_at: float) -> dict[str, float]:
    """Listening time the server credits to each side, seconds.

    A client's claim is capped by the wall-clock time between the battle's issue and the moment the
    server received the claim: nobody can have heard more of a clip than the time that has passed
    since it was handed out. The credit of a side is the largest capped claim among its events.
    """
    credit = dict.fromkeys(SIDES, 0.0)
    for event in events:
        elapsed = max(0.0, event.server_time - issued_at)
        credit[event.side] = max(credit[event.side], min(event.seconds, elapsed))
    return credit


def check_listening(credit: Mapping[str, float], min_listen_s: float) -> None:
    """Refuse unless each side has at least ``min_listen_s`` seconds of credited listening."""
    short = {side: min_listen_s - credit.get(side, 0.0) for side in SIDES}
    short = {side: need for side, need in short.items() if need > 1e-9}
    if short:
        parts = ", ".join(f"{need:.1f} s more of clip {side}" for side, need in short.items())
        raise VoteRefused(
            "not_listened",
            f"please listen to each clip for at least {min_listen_s:g} s before voting "
            f"(still needed: {parts}).",
        )


def check_rate_limit(
    recent_vote_times: Iterable[float], now: float, *, limit: int, window_s: float
) -> None:
    """Refuse when the voter already cast ``limit`` votes in the last ``window_s`` seconds.

    Args:
        recent_vote_times: Unix seconds of the voter's votes (older ones are ignored).
        now: current server time, Unix seconds.
    """
    times = sorted(t for t in recent_vote_times if t > now - window_s)
    if len(times) < limit:
        return
    # The vote that must leave the window before a new one fits is the limit-th newest.
    retry = times[len(times) - limit] + window_s - now
    raise VoteRefused(
        "rate_limited",
        f"you have cast {len(times)} votes in the last {window_s / 60:g} minutes (limit {limit}); "
        f"you can vote again in {math.ceil(retry)} s.",
        retry_after_s=max(0.0, retry),
    )

"""Vote rules: pure checks of the server's facts (issue time, listen events, vote times), never
the client's word; every refusal raises :class:`VoteRefused`."""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from apex.tasks import AESTHETICS, PREFERENCES, SIDES

#: Per-clip ratings use SongEval's 1-5 scale on the five aesthetic dimensions.
RATING_RANGE: tuple[int, int] = (1, 5)

#: Machine-readable codes of :class:`VoteRefused`, one per refusal path.
REFUSAL_CODES: tuple[str, ...] = (
    "unknown_battle",
    "expired",
    "wrong_session",
    "already_voted",
    "not_voted",
    "not_listened",
    "rate_limited",
    "bad_preference",
    "bad_side",
    "bad_listen",
    "feedback_too_long",
    "bad_feedback",
    "bad_ratings",
    "no_pair",
)


class VoteRefused(Exception):
    """A battle action was refused: ``code`` (one of :data:`REFUSAL_CODES`) for programs,
    ``message`` (``str(exc)``: what was wrong and what to do) for people, and for rate limits
    ``retry_after_s``, the seconds until the action can succeed."""

    def __init__(self, code: str, message: str, *, retry_after_s: float | None = None) -> None:
        if code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}; use one of {REFUSAL_CODES}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ListenEvent:
    """One play-progress report: the client's claim of the total ``seconds`` played of clip
    ``side`` (``"A"``/``"B"``), and the ``server_time`` it arrived, Unix seconds."""

    side: str
    seconds: float
    server_time: float


#: Longest battle id accepted (ours are 32 hex digits); anything longer is not one of ours.
BATTLE_ID_MAX_CHARS = 64


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about a bad client value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_battle_id(battle_id: object) -> str:
    """Return the battle id if it is a plausible id string; refuse anything else."""
    if not isinstance(battle_id, str) or not 0 < len(battle_id) <= BATTLE_ID_MAX_CHARS:
        raise VoteRefused(
            "unknown_battle",
            f"battle id {shown(battle_id)} is not one this server issues; pass the battle_id "
            "that /new_battle returned, or start a new battle.",
        )
    return battle_id


def check_preference(preference: object) -> str:
    """Return the preference if it is one of :data:`PREFERENCES`; refuse otherwise."""
    if not isinstance(preference, str) or preference not in PREFERENCES:
        raise VoteRefused(
            "bad_preference",
            f"preference {shown(preference)} is not valid; choose one of {', '.join(PREFERENCES)}.",
        )
    return preference


def check_side(side: object) -> str:
    """Return the side if it is ``"A"`` or ``"B"``; refuse otherwise."""
    if not isinstance(side, str) or side not in SIDES:
        raise VoteRefused("bad_side", f"side {shown(side)} is not valid; use 'A' or 'B'.")
    return side


def check_listen_seconds(seconds: object) -> float:
    """Return a play-progress value in seconds if it is a finite JSON number ≥ 0; refuse anything
    else (a string ``"5"``, ``true``, null, a list), never converting it."""
    is_number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not is_number or not math.isfinite(seconds) or seconds < 0:  # type: ignore[arg-type]
        raise VoteRefused(
            "bad_listen",
            f"listened seconds must be a finite number ≥ 0 (a JSON number such as 12.5), "
            f"got {shown(seconds)}.",
        )
    return float(seconds)  # type: ignore[arg-type]


def check_feedback(feedback: object, max_chars: int) -> str | None:
    """Return stripped feedback (None when empty); refuse non-text and text over ``max_chars``."""
    if feedback is None:
        return None
    if not isinstance(feedback, str):
        raise VoteRefused(
            "bad_feedback", f"feedback must be text, got {type(feedback).__name__}; send a string."
        )
    text = feedback.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. "\ud800") is not storable text
        raise VoteRefused(
            "bad_feedback",
            "feedback contains characters that are not valid text (a lone UTF-16 surrogate); "
            "remove them and vote again.",
        ) from None
    if len(text) > max_chars:
        raise VoteRefused(
            "feedback_too_long",
            f"feedback is {len(text)} characters; the limit is {max_chars}. "
            "Shorten it and vote again.",
        )
    return text or None


_RATINGS_SHAPE = 'an object such as {"A": {"coherence": 4}, "B": {"clarity": 2}}'


def check_ratings(ratings: object) -> dict[str, dict[str, int]] | None:
    """Validate optional ratings ``{"A"|"B": {aesthetic: 1-5}}`` (any subset of
    :data:`apex.tasks.AESTHETICS`): a clean copy with int values, or None when nothing was rated."""
    if ratings is None:
        return None
    if not isinstance(ratings, Mapping):
        raise VoteRefused("bad_ratings", f"ratings must be {_RATINGS_SHAPE}, got {shown(ratings)}.")
    low, high = RATING_RANGE
    clean: dict[str, dict[str, int]] = {}
    for side, dims in ratings.items():
        if not isinstance(side, str) or side not in SIDES:
            raise VoteRefused(
                "bad_ratings", f"ratings side {shown(side)} is not valid; use 'A' or 'B'."
            )
        if dims is None:
            continue
        if not isinstance(dims, Mapping):
            raise VoteRefused(
                "bad_ratings",
                f"ratings of {side} must map dimensions to 1-5 ({_RATINGS_SHAPE}), "
                f"got {shown(dims)}.",
            )
        for dim, value in dims.items():
            if not isinstance(dim, str) or dim not in AESTHETICS:
                raise VoteRefused(
                    "bad_ratings",
                    f"unknown rating dimension {shown(dim)}; rate any of {', '.join(AESTHETICS)}.",
                )
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if not is_int and not (isinstance(value, float) and value.is_integer()):
                raise VoteRefused(
                    "bad_ratings", f"rating {dim}={shown(value)} must be a whole number."
                )
            if not low <= value <= high:
                raise VoteRefused(
                    "bad_ratings",
                    f"rating {dim}={value} is outside {low}-{high}; pick a whole number.",
                )
            clean.setdefault(side, {})[dim] = int(value)
    return clean or None


def listened_seconds(events: Iterable[ListenEvent], issued_at: float) -> dict[str, float]:
    """Listening the server credits to each side, seconds: the largest claim among a side's
    events, each capped by the time from the battle's issue to the claim's arrival."""
    credit = dict.fromkeys(SIDES, 0.0)
    for event in events:
        elapsed = max(0.0, event.server_time - issued_at)
        credit[event.side] = max(credit[event.side], min(event.seconds, elapsed))
    return credit


#: Credit within this many seconds of the minimum counts as enough (float rounding of reports).
_LISTEN_SLACK_S = 1e-9


@dataclass(frozen=True)
class ListenStatus:
    """Whether listening allows a vote, and the seconds ``missing`` per side (0.0 when done)."""

    can_vote: bool
    missing: dict[str, float]


def listen_status(credit: Mapping[str, float], min_listen_s: float) -> ListenStatus:
    """The listening rule, for the server and the UI: each side needs ``min_listen_s`` seconds of
    credited listening (:func:`listened_seconds`; a side missing from ``credit`` counts 0)."""
    missing = {side: max(0.0, min_listen_s - credit.get(side, 0.0)) for side in SIDES}
    missing = {side: 0.0 if need <= _LISTEN_SLACK_S else need for side, need in missing.items()}
    return ListenStatus(not any(missing.values()), missing)


def check_listening(credit: Mapping[str, float], min_listen_s: float) -> None:
    """Refuse unless :func:`listen_status` says the vote can be cast."""
    status = listen_status(credit, min_listen_s)
    if not status.can_vote:
        missing = status.missing.items()
        parts = ", ".join(f"{need:.1f} s more of clip {side}" for side, need in missing if need)
        raise VoteRefused(
            "not_listened",
            f"please listen to each clip for at least {min_listen_s:g} s before voting "
            f"(still needed: {parts}).",
        )


def check_own_battle(battle: Any, session: str | None) -> Any:
    """``battle`` (stored, or None when unknown); refused when missing or, given ``session``
    (pseudonym), not that session's."""
    if battle is None:
        raise VoteRefused(
            "unknown_battle", "this battle does not exist on the server; start a new battle."
        )
    if session is not None and battle.session != session:
        raise VoteRefused(
            "wrong_session",
            "this battle was issued to another session; start a new battle of your own.",
        )
    return battle


def check_open_battle(battle: Any, session: str, now: float, ttl_s: float) -> Any:
    """``battle``; refused as by :func:`check_own_battle`, or when already voted or older than
    ``ttl_s`` at ``now`` (Unix seconds)."""
    battle = check_own_battle(battle, session)
    if battle.status == "voted":
        raise VoteRefused("already_voted", "this battle already has a vote; start a new battle.")
    if now - battle.issued_at > ttl_s:
        raise VoteRefused(
            "expired",
            f"this battle expired ({ttl_s / 60:g} minutes after it was issued); start a new one.",
        )
    return battle


def check_rate_limit(
    recent_vote_times: Iterable[float],
    now: float,
    *,
    limit: int,
    window_s: float,
    done: str = "cast {n} votes",
    again: str = "vote again",
) -> None:
    """Refuse when the voter's actions (Unix seconds) hold ``limit`` in the last ``window_s``;
    ``done`` (with ``{n}``: "started {n} battles") and ``again`` ("start a battle") word it."""
    times = sorted(t for t in recent_vote_times if t > now - window_s)
    if len(times) < limit:
        return
    # The action that must leave the window before a new one fits is the limit-th newest.
    retry = times[len(times) - limit] + window_s - now
    raise VoteRefused(
        "rate_limited",
        f"you have {done.format(n=len(times))} in the last {window_s / 60:g} minutes "
        f"(limit {limit}); you can {again} in {math.ceil(retry)} s.",
        retry_after_s=max(0.0, retry),
    )


def check_listen_reports(count: int, limit: int) -> None:
    """Refuse a listen report when the battle already holds ``limit`` of them."""
    if count >= limit:
        raise VoteRefused(
            "rate_limited",
            f"this battle already has {count} listening reports (limit {limit}); your listening "
            "so far is recorded. Vote, or start a new battle.",
        )


class RecentActions:
    """Times of each key's recent actions, refused beyond a limit (``done``, ``again``: as for
    :func:`check_rate_limit`); counted per process, unlike votes: no store read per request."""

    def __init__(self, done: str, again: str) -> None:
        self._done, self._again = done, again
        self._times: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def admit(self, key: str, now: float, *, limit: int, window_s: float) -> None:
        """Record one action of ``key`` at ``now`` (Unix seconds), or refuse it (``rate_limited``,
        not counted) when ``key`` already did ``limit`` in the last ``window_s`` seconds."""
        with self._lock:
            times = self._times.setdefault(key, collections.deque())
            while times and times[0] <= now - window_s:
                times.popleft()
            check_rate_limit(
                times, now, limit=limit, window_s=window_s, done=self._done, again=self._again
            )
            times.append(now)
            if now - self._pruned_at > window_s:
                # Forget keys whose every action has left the window: memory follows the voters
                # active in the last window, not every voter ever seen.
                self._times = {k: t for k, t in self._times.items() if t and t[-1] > now - window_s}
                self._pruned_at = now

"""In-memory sliding windows of recent actions per voter (battles issued, listening reports).

Votes are limited from the store; these cheap, frequent actions are counted here, per process
(a restart forgets them; replicas each hold their own), to save a database read per request.
"""

from __future__ import annotations

import collections
import threading

from annotation import rules


class RecentActions:
    """Times of each key's recent actions within ``window_s``; refuses beyond a limit.

    Args:
        done: what was done, with ``{n}`` ("started {n} battles"), for the refusal message.
        again: what can be done after the wait ("start a battle").
    """

    def __init__(self, done: str, again: str) -> None:
        self._done, self._again = done, again
        self._times: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def admit(self, key: str, now: float, *, limit: int, window_s: float) -> None:
        """Record one action of ``key`` at ``now`` (Unix seconds), or refuse it.

        Raises:
            VoteRefused: ``rate_limited`` with ``retry_after_s`` when ``key`` already did
                ``limit`` actions in the last ``window_s`` seconds (the refused one is not counted).
        """
        with self._lock:
            times = self._times.setdefault(key, collections.deque())
            while times and times[0] <= now - window_s:
                times.popleft()
            if len(times) >= limit:
                rules.check_rate_limit(
                    times, now, limit=limit, window_s=window_s, done=self._done, again=self._again
                )
            times.append(now)
            if now - self._pruned_at > window_s:
                # Forget keys whose every action has left the window: memory follows the voters
                # active in the last window, not every voter ever seen.
                self._times = {k: t for k, t in self._times.items() if t and t[-1] > now - window_s}
                self._pruned_at = now


def battle_limiter() -> RecentActions:
    """The window of battles issued per voter."""
    return RecentActions("started {n} battles", "start a new battle")


def listen_limiter() -> RecentActions:
    """The window of listening reports per voter."""
    return RecentActions("sent {n} listening reports", "report listening again")

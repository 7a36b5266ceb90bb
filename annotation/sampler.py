"""Pair sampling: two clips of different systems in random A/B order, from one prompt while the
voter has an unheard same-prompt pair. The system pair is drawn with weight ``1 / (1 + battles
so far)`` (``balanced``), times ``floor + P(|N(0, 1)| > |rating gap| / SE of the gap)`` in ``info``
mode (SEs from interval widths; unrated: fully open; no intervals: ``4 p (1 - p)``); its clips
uniformly among those the voter has not heard together."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from annotation.board import select_votes
from annotation.ratings import POINTS_PER_NAT, fit_bradley_terry, require_columns
from annotation.refreshing import Refreshing, StoreFit
from apex.tasks import A_WIN_SHARE

_RANDOM_TRIES = 16  # draws before enumerating a pair's clip pairs (exclusions are few)
_INFO_FLOOR = 0.05  # a settled pair still gets a trickle of battles, so its rating is checked
RATINGS_BOOTSTRAP = 64  # bootstrap rounds of info mode's ratings: enough for an interval width
RATINGS_REFRESH_S = 60.0  # seconds between refits of those ratings
FIRST_READ_WAIT_S = 60.0  # the first read of pair counts or ratings waits this long (later: never)


class NoPairAvailable(LookupError):
    """Every clip pair of two different systems is excluded (the voter has heard them all)."""


def pair_key(system_a: str, system_b: str) -> tuple[str, str]:
    """The ``pair_counts`` key of two systems: the sorted tuple ``(min, max)``."""
    if system_a == system_b:
        raise ValueError(f"a pair needs two different systems, got {system_a!r} twice")
    return (system_a, system_b) if system_a < system_b else (system_b, system_a)


class PairCounts:
    """Battles per system pair: the store's count (``read``, e.g. ``VoteStore.pair_counts``),
    re-read in the background every ``refresh_s`` monotonic seconds, plus this process's own
    battles since (:meth:`add`). Thread-safe; only the first request reads the store."""

    def __init__(
        self, read: Callable[[], dict[tuple[str, str], int]], *, refresh_s: float = 60.0
    ) -> None:
        self._stored = Refreshing(read, version=time.monotonic, min_interval_s=refresh_s)
        self._lock = threading.Lock()
        self._base: dict[tuple[str, str], int] | None = None
        self._added: Counter[tuple[str, str]] = Counter()

    def counts(self) -> dict[tuple[str, str], int]:
        """``{(system, system): battles}`` (sorted pairs), a copy: other threads go on counting."""
        stored = self._stored.get(wait_s=FIRST_READ_WAIT_S)
        with self._lock:
            if stored is not self._base:
                # A weight, not a record: a battle counted twice around a re-read is harmless.
                self._base, self._added = stored, Counter()
            return dict(Counter(stored or {}) + self._added)

    def add(self, system_a: str, system_b: str) -> None:
        """Count one more battle of this pair (until the next re-read)."""
        key = pair_key(system_a, system_b)
        with self._lock:
            self._added[key] += 1


class PairSampler:
    """Draws battles from ``clips`` (``clip_id`` unique, ``system``, ``prompt``) in ``mode``;
    thread-safe. The same seed, pool and calls give the same battles."""

    def __init__(
        self,
        clips: pd.DataFrame,
        *,
        mode: Literal["balanced", "info"] = "balanced",
        seed: int = 0,
    ) -> None:
        require_columns(clips, ("clip_id", "system", "prompt"), "clips")
        if mode not in ("balanced", "info"):
            raise ValueError(f"mode must be 'balanced' or 'info', got {mode!r}")
        if clips["clip_id"].duplicated().any():
            dup = clips["clip_id"][clips["clip_id"].duplicated()].iloc[0]
            raise ValueError(f"clip ids must be unique; {dup!r} appears more than once")
        table = clips[["clip_id", "system", "prompt"]].astype(str)
        table = table.sort_values(["system", "prompt", "clip_id"])
        systems = tuple(sorted(table["system"].unique()))
        if len(systems) < 2:
            raise ValueError(f"the pool needs clips of at least two systems, got {list(systems)}")
        self.mode, self.systems = mode, systems
        # Frozen lookups built once; sample() only reads them, so only the RNG needs the lock.
        self._by_system = {s: tuple(g["clip_id"]) for s, g in table.groupby("system")}
        self._by_prompt_system = {
            key: tuple(g["clip_id"]) for key, g in table.groupby(["prompt", "system"])
        }
        prompts_of = table.groupby("system")["prompt"].agg(lambda p: set(p))
        self._pairs = tuple((x, y) for n, x in enumerate(systems) for y in systems[n + 1 :])
        self._shared = {
            pair: tuple(sorted(prompts_of[pair[0]] & prompts_of[pair[1]])) for pair in self._pairs
        }
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def sample(
        self,
        *,
        pair_counts: Mapping[tuple[str, str], int],
        ratings: pd.DataFrame | None = None,
        exclude: set[frozenset[str]] | frozenset[frozenset[str]] = frozenset(),
    ) -> tuple[str, str]:
        """Draw the next battle: ``(clip_id_a, clip_id_b)``, two systems in random order.

        ``pair_counts``: battles so far per :func:`pair_key` (missing: 0); ``ratings``: a
        :func:`~annotation.ratings.fit_bradley_terry` table (``info`` mode); ``exclude``: clip
        pairs this session heard (NoPairAvailable when every eligible pair is).
        """
        weights = self._weights(pair_counts, ratings)
        with self._lock:
            # Same-prompt pairs first; cross-prompt only when no same-prompt pair is left.
            for same_prompt in (True, False):
                pairs = [n for n, p in enumerate(self._pairs) if self._shared[p] or not same_prompt]
                while pairs:
                    w = weights[pairs]
                    pick = pairs[int(self._rng.choice(len(pairs), p=w / w.sum()))]
                    clips = self._draw_clips(self._pairs[pick], same_prompt, exclude)
                    if clips is not None:
                        return clips if self._rng.random() < 0.5 else (clips[1], clips[0])
                    pairs.remove(pick)
        raise NoPairAvailable(
            f"every clip pair of two different systems among {len(self._by_system)} systems is "
            f"excluded ({len(exclude)} pairs already heard); start a new session or add clips"
        )

    def _weights(
        self, pair_counts: Mapping[tuple[str, str], int], ratings: pd.DataFrame | None
    ) -> np.ndarray:
        """``[len(self._pairs)]`` sampling weights, all > 0."""
        counts = dict.fromkeys(self._pairs, 0)
        for (x, y), c in pair_counts.items():
            if x != y and (key := pair_key(str(x), str(y))) in counts:
                counts[key] += int(c)
        weights = np.array([1.0 / (1.0 + counts[p]) for p in self._pairs])
        if self.mode == "info" and ratings is not None and len(ratings):
            require_columns(ratings, ("rating",), "ratings")
            # One standard error per system from the 95% interval (width / 3.92 when the
            # bootstrap is near normal); NaN when there is no interval.
            width = ratings.get("ci_high", np.nan) - ratings.get("ci_low", np.nan)
            rating = {str(k): float(v) for k, v in ratings["rating"].items()}
            se = {str(k): float(v) / 3.92 for k, v in pd.Series(width, index=ratings.index).items()}
            weights *= np.array([_order_uncertainty(rating, se, x, y) for x, y in self._pairs])
        return weights

    def _draw_clips(
        self, pair: tuple[str, str], same_prompt: bool, exclude: set[frozenset[str]]
    ) -> tuple[str, str] | None:
        """A uniformly drawn clip pair of the two systems not in ``exclude``, or None."""
        if same_prompt:
            groups = [
                (self._by_prompt_system[(p, pair[0])], self._by_prompt_system[(p, pair[1])])
                for p in self._shared[pair]
            ]
        else:
            groups = [(self._by_system[pair[0]], self._by_system[pair[1]])]
        sizes = np.array([len(a) * len(b) for a, b in groups], dtype=np.float64)
        # Random tries first: exclusions are a voter's session, tiny next to the pool.
        for _ in range(_RANDOM_TRIES):
            a, b = groups[int(self._rng.choice(len(groups), p=sizes / sizes.sum()))]
            clip_a, clip_b = a[self._rng.integers(len(a))], b[self._rng.integers(len(b))]
            if frozenset((clip_a, clip_b)) not in exclude:
                return clip_a, clip_b
        left = [(x, y) for a, b in groups for x in a for y in b if frozenset((x, y)) not in exclude]
        if not left:
            return None
        return left[int(self._rng.integers(len(left)))]


def _order_uncertainty(rating: dict[str, float], se: dict[str, float], x: str, y: str) -> float:
    """How open the order of x and y is, ``floor`` to ``1 + floor`` (points; NaN SE: unknown)."""
    if x not in rating or y not in rating:
        return 1.0 + _INFO_FLOOR
    gap = abs(rating[x] - rating[y])
    se_gap = math.hypot(se[x], se[y])
    if math.isnan(se_gap):
        p = 1.0 / (1.0 + math.exp(-gap / POINTS_PER_NAT))
        return _INFO_FLOOR + 4.0 * p * (1.0 - p)
    if se_gap == 0.0:
        return _INFO_FLOOR + (1.0 if gap == 0.0 else 0.0)
    return _INFO_FLOOR + math.erfc(gap / se_gap / math.sqrt(2.0))


class StoreRatings(StoreFit):
    """The vote store's ratings for ``info`` sampling (call it for the table): a fit (``C=1``,
    :data:`RATINGS_BOOTSTRAP` rounds) of our votes, flagged ones included, refreshed off the
    request path; only the first call waits."""

    def __init__(
        self,
        store: Any,
        *,
        refresh_s: float = RATINGS_REFRESH_S,
        settings: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(store, _store_ratings, refresh_s=refresh_s, settings=settings, clock=clock)

    def __call__(self) -> pd.DataFrame | None:
        """Ratings (index system; ``rating``, ``ci_low``, ``ci_high``), or None before any
        rated vote between two systems."""
        return self.get(wait_s=FIRST_READ_WAIT_S)


def _store_ratings(store: Any) -> pd.DataFrame | None:
    votes = select_votes(store.votes_frame(), include_flagged=True)
    votes = votes[votes["preference"].isin(A_WIN_SHARE)]  # rated
    if len(set(votes["system_a"]) | set(votes["system_b"])) < 2:
        return None
    return fit_bradley_terry(votes, l2=1.0, bootstrap_rounds=RATINGS_BOOTSTRAP, seed=0)

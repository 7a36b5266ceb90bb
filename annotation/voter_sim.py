"""Simulated voters through the real arena: honest listeners and the kinds the flags must catch.

Everything runs through :class:`annotation.arena.Arena` (battles, listen reports, votes, rate
limits, flags) on a simulated clock, so the flags are measured on the same path real votes take.
Voters act concurrently: each one's steps (take a battle, report clip A, report clip B, vote) are
events on one timeline, processed in time order.

Kinds (:data:`VOTER_KINDS`):

- ``honest``: hears A then B, each for a uniform time between the minimum listen and the whole
  clip, thinks 1-5 s, and chooses as :data:`apex.demo.listeners.ARENA` listeners of the true
  strengths (Bradley-Terry, 5 % ties).
- ``always_a``: listens like an honest voter but always votes A.
- ``too_fast``: plays both clips at once for just over the minimum and votes at once.
- ``contrarian``: listens like an honest voter and picks the truly weaker system.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from annotation.identity import Pseudonymizer, load_or_create_salt
from annotation.pool import Clip, ClipPool
from annotation.rules import VoteRefused
from apex.demo.listeners import ARENA, choose, outcome_probabilities

VOTER_KINDS: tuple[str, ...] = ("honest", "always_a", "too_fast", "contrarian")
_RATE = 8_000


class SimClock:
    """A settable arena clock, Unix seconds."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_sim_pool(
    folder: Path,
    systems: Sequence[str],
    *,
    clips_per_system: int = 6,
    duration_s: float = 30.0,
    seed: int = 0,
) -> ClipPool:
    """A pool of short real WAV files (tones at random loudness), ``duration_s`` as the clips'
    stated length. Audio is 2 s long (the arena measures it; listening is simulated)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    t = np.arange(2 * _RATE) / _RATE
    for system in systems:
        for k in range(clips_per_system):
            level_db = rng.uniform(-30.0, -8.0)
            tone = 10 ** (level_db / 20) * np.sin(2 * np.pi * rng.uniform(150, 900) * t)
            path = folder / f"{system}_{k}.wav"
            sf.write(path, tone, _RATE)
            clips.append(
                Clip(
                    clip_id=f"{system}_{k}",
                    path=path,
                    file_name=path.name,
                    system=system,
                    prompt=f"prompt {k}",
                    is_instrumental=True,
                    duration_s=duration_s,
                )
            )
    return ClipPool(clips, folder)


@dataclass(frozen=True)
class SimVoter:
    """One simulated voter: ``kind`` (:data:`VOTER_KINDS`) and the address it votes from."""

    name: str
    kind: str
    ip: str


def _steps(
    voter: SimVoter,
    arena,
    clock: SimClock,
    strengths: Mapping[str, float],
    votes: int,
    rng: np.random.Generator,
) -> Iterator[float]:
    """One voter's actions as a generator: yields the time of its next step."""
    need = float(arena.settings.min_listen_s)
    cast = 0
    while cast < votes:
        session = f"{voter.name}-{cast // 40}"
        try:
            ticket = arena.new_battle(session, voter.ip)
        except VoteRefused:
            return
        battle = arena.store.get_battle(ticket.battle_id)
        clip_len = arena.pool[battle.clip_a].duration_s
        start = clock.now
        if voter.kind == "too_fast":
            la = lb = need + 0.5
            yield start + la
            arena.listen(ticket.battle_id, "A", la, session)
            arena.listen(ticket.battle_id, "B", lb, session)
            yield clock.now + 1.0
        else:
            la, lb = rng.uniform(need, clip_len), rng.uniform(need, clip_len)
            yield start + la
            arena.listen(ticket.battle_id, "A", la, session)
            yield clock.now + lb
            arena.listen(ticket.battle_id, "B", lb, session)
            yield clock.now + rng.uniform(1.0, 5.0)
        preference = _choose(voter.kind, battle, strengths, rng)
        while True:
            try:
                arena.vote(ticket.battle_id, preference, session, voter.ip)
                break
            except VoteRefused as err:
                if err.code != "rate_limited":
                    raise
                yield clock.now + (err.retry_after_s or 1.0) + 0.01
        cast += 1
        yield clock.now + rng.uniform(0.5, 3.0)


def _choose(kind: str, battle, strengths: Mapping[str, float], rng: np.random.Generator) -> str:
    if kind == "always_a":
        return "A"
    if kind == "contrarian":
        return "B" if strengths[battle.system_a] > strengths[battle.system_b] else "A"
    probs = outcome_probabilities([strengths[battle.system_a]], [strengths[battle.system_b]], ARENA)
    return str(choose(probs, rng)[0])


def run_voters(
    arena,
    clock: SimClock,
    strengths: Mapping[str, float],
    kinds: Mapping[str, int],
    *,
    votes_per_voter: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Let ``kinds[kind]`` voters of each kind cast ``votes_per_voter`` votes each, concurrently.

    Args:
        arena: an :class:`annotation.arena.Arena` whose clock is ``clock``.
        strengths: true strength of each system, nats (Bradley-Terry).

    Returns:
        The store's votes with a ``kind`` column (the simulated voter's kind).
    """
    rng = np.random.default_rng(seed)
    voters = [
        SimVoter(f"{kind}-{n}", kind, f"10.{i}.{n // 250}.{n % 250 + 1}")
        for i, (kind, count) in enumerate(kinds.items())
        for n in range(count)
    ]
    start = clock.now
    queue = []
    runners = {}
    for order, voter in enumerate(voters):
        runners[order] = _steps(voter, arena, clock, strengths, votes_per_voter, rng)
        heapq.heappush(queue, (start + rng.uniform(0, 60), order))
    while queue:
        when, order = heapq.heappop(queue)
        clock.now = max(clock.now, when)
        nxt = next(runners[order], None)
        if nxt is not None:
            heapq.heappush(queue, (nxt, order))
    frame = arena.store.votes_frame()
    ids = Pseudonymizer(load_or_create_salt(arena.settings))
    pseudonym = {ids.voter("", v.ip): v.kind for v in voters}
    frame["kind"] = frame["user_pseudonym"].map(pseudonym)
    return frame

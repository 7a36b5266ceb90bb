"""Simulated voters through the real arena (battles, listen reports, votes, rate limits, flags):
each voter's steps (take a battle, report clip A, report clip B, vote) are events on one simulated
timeline, processed in time order; the choices come from :mod:`apex.demo.listeners`."""

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

_RATE = 8_000


@dataclass
class SimClock:
    """A settable arena clock, Unix seconds."""

    now: float = 1_750_000_000.0

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
    """A pool of 2 s WAV tones at random loudness (the arena measures it), each clip stating
    ``duration_s`` as its length (listening is simulated)."""
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
    """One simulated voter and the address it votes from. ``kind``: ``honest`` hears A then B,
    each for a uniform time between the minimum listen and the whole clip, thinks 1-5 s and votes
    as :data:`~apex.demo.listeners.ARENA` listeners of the true strengths; ``always_a`` listens
    alike but always votes A; ``too_fast`` plays both clips at once for just over the minimum and
    votes at once; ``contrarian`` picks the weaker system."""

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
    """Yields the time of the voter's next step."""
    need = float(arena.settings.min_listen_s)
    for cast in range(votes):
        session = f"{voter.name}-{cast // 40}"
        try:
            ticket = arena.new_battle(session, voter.ip)
        except VoteRefused:
            return
        battle = arena.store.get_battle(ticket.battle_id)
        if voter.kind == "too_fast":
            yield clock.now + need + 0.5
            arena.listen(ticket.battle_id, "A", need + 0.5, session)
            arena.listen(ticket.battle_id, "B", need + 0.5, session)
            yield clock.now + 1.0
        else:
            la = rng.uniform(need, arena.pool[battle.clip_a].duration_s)
            lb = rng.uniform(need, arena.pool[battle.clip_b].duration_s)
            yield clock.now + la
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
    """Let ``kinds[kind]`` voters of each kind cast ``votes_per_voter`` votes each, concurrently,
    in ``arena`` (an :class:`annotation.arena.Arena` on ``clock``); ``strengths``: each system's
    true Bradley-Terry strength, nats. Returns the store's votes plus each voter's ``kind``."""
    rng = np.random.default_rng(seed)
    voters = [
        SimVoter(f"{kind}-{n}", kind, f"10.{i}.{n // 250}.{n % 250 + 1}")
        for i, (kind, count) in enumerate(kinds.items())
        for n in range(count)
    ]
    runners = [_steps(v, arena, clock, strengths, votes_per_voter, rng) for v in voters]
    queue = [(clock.now + rng.uniform(0, 60), order) for order in range(len(voters))]
    heapq.heapify(queue)
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

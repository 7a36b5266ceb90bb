"""APEX_SAMPLER=info in the arena: battles follow the vote store's current ratings."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from annotation.arena import Arena
from annotation.sampler import StoreRatings
from annotation.store import SQLiteVoteStore
from tests.annotation.test_arena import make_pool


def known_votes(arena: Arena, store, battles: int) -> None:
    """Votes where x beats everyone and y and z split evenly: x's place is settled, y-z not."""
    for n in range(battles):
        session = f"seed-{n}"
        ticket = arena.new_battle(session)
        battle = store.get_battle(ticket.battle_id)
        if "x" in (battle.system_a, battle.system_b):
            pref = "A" if battle.system_a == "x" else "B"
        else:
            pref = "A" if n % 2 else "B"
        arena.vote(ticket.battle_id, pref, session)


def pair_shares(arena: Arena, store, draws: int) -> Counter:
    shares: Counter = Counter()
    for n in range(draws):
        battle = store.get_battle(arena.new_battle(f"{arena.settings.sampler}-{n}").battle_id)
        shares[tuple(sorted((battle.system_a, battle.system_b)))] += 1 / draws
    return shares


@pytest.fixture
def voted(tmp_path: Path, settings):
    settings = settings.replace(salt="s", min_listen_s=0.0, rate_limit_votes=100_000)
    pool = make_pool(tmp_path, per_system=3, scored=False)
    with SQLiteVoteStore(settings.store_path) as store:
        known_votes(Arena(settings, pool, store, seed=0), store, 150)
        yield settings, pool, store


def test_info_sampling_follows_the_stores_ratings_unlike_balanced(voted) -> None:
    settings, pool, store = voted
    info = Arena(settings.replace(sampler="info"), pool, store, seed=1)
    ratings = info._ratings()  # the arena's own ratings source: the store's current fit
    assert isinstance(info._ratings, StoreRatings) and set(ratings.index) == {"x", "y", "z"}
    assert ratings.loc["x", "ci_low"] > ratings.loc["y", "ci_high"]  # x is settled on top
    info_shares = pair_shares(info, store, 150)
    balanced_shares = pair_shares(Arena(settings, pool, store, seed=1), store, 150)
    # info spends most battles on the open y-z order; balanced spreads them across pairs.
    assert info_shares[("y", "z")] > 0.6
    assert balanced_shares[("y", "z")] < 0.5


def test_store_ratings_refit_only_after_the_refresh_interval(voted) -> None:
    settings, pool, store = voted
    now = [0.0]
    ratings = StoreRatings(store, refresh_s=60.0, clock=lambda: now[0])
    first = ratings()
    votes = int(first["votes"].sum())
    known_votes(Arena(settings, pool, store, seed=5), store, 10)
    now[0] = 59.0
    assert ratings() is first  # cached: no refit per battle
    now[0] = 61.0  # a refit starts in the background; the last fit meanwhile
    deadline = time.monotonic() + 30
    while int(ratings()["votes"].sum()) != votes + 2 * 10:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_store_ratings_without_votes_is_none(tmp_path: Path, settings) -> None:
    with SQLiteVoteStore(settings.store_path) as store:
        assert StoreRatings(store)() is None

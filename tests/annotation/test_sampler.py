"""Pair sampler: different systems, same prompt first, balance, information seeking, session
exclusions, determinism and thread safety."""

from __future__ import annotations

import threading
from collections import Counter

import pandas as pd
import pytest

from annotation.sampler import NoPairAvailable, PairSampler, pair_key


def make_pool(layout: dict[str, list[str]], clips_per_cell: int = 2) -> pd.DataFrame:
    """``layout``: prompt -> systems that have clips for it."""
    rows = [
        (f"{system}-{prompt}-{n}", system, prompt)
        for prompt, systems in layout.items()
        for system in systems
        for n in range(clips_per_cell)
    ]
    return pd.DataFrame(rows, columns=["clip_id", "system", "prompt"])


FULL = make_pool({f"p{n}": ["A", "B", "C", "D"] for n in range(6)})


def info(pool: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """clip id -> system, clip id -> prompt."""
    by_clip = pool.set_index("clip_id")
    return by_clip["system"].to_dict(), by_clip["prompt"].to_dict()


def draw_pairs(sampler: PairSampler, pool: pd.DataFrame, n: int, **kwargs) -> Counter:
    system, _ = info(pool)
    return Counter(
        pair_key(system[a], system[b]) for a, b in (sampler.sample(**kwargs) for _ in range(n))
    )


def test_never_the_same_system_and_same_prompt():
    system, prompt = info(FULL)
    sampler = PairSampler(FULL, seed=0)
    for _ in range(500):
        a, b = sampler.sample(pair_counts={})
        assert system[a] != system[b]
        assert prompt[a] == prompt[b]


def test_same_prompt_wins_over_pairs_that_never_share_one():
    # A and B share p1; C only has clips for p2, alone, so C can only be in a cross-prompt battle.
    pool = make_pool({"p1": ["A", "B"], "p2": ["C"]})
    counts = draw_pairs(PairSampler(pool, seed=1), pool, 200, pair_counts={})
    assert set(counts) == {("A", "B")}


def test_cross_prompt_when_no_prompt_has_two_systems():
    pool = make_pool({"p1": ["A"], "p2": ["B"], "p3": ["C"]})
    system, prompt = info(pool)
    sampler = PairSampler(pool, seed=2)
    seen = set()
    for _ in range(300):
        a, b = sampler.sample(pair_counts={})
        assert system[a] != system[b] and prompt[a] != prompt[b]
        seen.add(pair_key(system[a], system[b]))
    assert seen == {("A", "B"), ("A", "C"), ("B", "C")}


def test_a_pair_with_many_battles_is_sampled_less():
    counts = draw_pairs(PairSampler(FULL, seed=3), FULL, 3000, pair_counts={("A", "B"): 1000})
    assert counts[("A", "B")] < 0.01 * 3000
    others = [counts[p] for p in counts if p != ("A", "B")]
    assert min(others) > 0.15 * 3000


def test_balance_is_graded_and_key_order_does_not_matter():
    # Weights 1/(1+n): a pair with 3 battles gets a quarter of the weight of a fresh pair.
    counts = draw_pairs(PairSampler(FULL, seed=4), FULL, 6000, pair_counts={("B", "A"): 3})
    fresh = sum(counts[p] for p in counts if p != ("A", "B")) / 5
    assert 3.0 < fresh / counts[("A", "B")] < 5.5


def test_info_mode_prefers_the_least_certain_pair():
    # A and B are level with wide intervals; every other gap is large against narrow intervals.
    ratings = pd.DataFrame(
        {
            "rating": [1100.0, 1100.0, 900.0, 700.0],
            "ci_low": [1050.0, 1050.0, 890.0, 690.0],
            "ci_high": [1150.0, 1150.0, 910.0, 710.0],
        },
        index=pd.Index(["A", "B", "C", "D"], name="system"),
    )
    counts = draw_pairs(
        PairSampler(FULL, mode="info", seed=5), FULL, 2000, pair_counts={}, ratings=ratings
    )
    assert counts.most_common(1)[0][0] == ("A", "B")
    assert counts[("A", "B")] > 0.5 * 2000
    # Balanced mode ignores the ratings.
    balanced = draw_pairs(PairSampler(FULL, seed=5), FULL, 2000, pair_counts={}, ratings=ratings)
    assert balanced[("A", "B")] < 0.3 * 2000


@pytest.mark.parametrize("ratings", [None, pd.DataFrame(columns=["rating", "ci_low", "ci_high"])])
def test_info_mode_before_any_rating_still_balances_battles(ratings):
    # A new arena has no board yet: info mode must still spread battles by the balance rule
    # (weights 1/(1+n)) rather than fixate on one pair or ignore the counts.
    counts = draw_pairs(
        PairSampler(FULL, mode="info", seed=6),
        FULL,
        6000,
        pair_counts={("A", "C"): 3},
        ratings=ratings,
    )
    assert len(counts) == 6  # every pair of the four systems is drawn
    fresh = sum(counts[p] for p in counts if p != ("A", "C")) / 5
    assert 3.0 < fresh / counts[("A", "C")] < 5.5


def test_info_mode_treats_unrated_systems_as_uncertain():
    ratings = pd.DataFrame(
        {
            "rating": [1300.0, 700.0, 1000.0],
            "ci_low": [1290.0, 690.0, 990.0],
            "ci_high": [1310.0, 710.0, 1010.0],
        },
        index=["A", "B", "C"],
    )
    counts = draw_pairs(
        PairSampler(FULL, mode="info", seed=7), FULL, 2000, pair_counts={}, ratings=ratings
    )
    with_d = sum(c for p, c in counts.items() if "D" in p)
    assert with_d > 0.9 * 2000


def test_exclusion_is_honoured_and_exhaustion_raises():
    pool = make_pool({"p1": ["A", "B"]})  # 2 x 2 = 4 clip pairs
    every = {frozenset((f"A-p1-{i}", f"B-p1-{j}")) for i in range(2) for j in range(2)}
    left = frozenset(("A-p1-1", "B-p1-0"))
    sampler = PairSampler(pool, seed=8)
    for _ in range(30):
        assert frozenset(sampler.sample(pair_counts={}, exclude=every - {left})) == left
    with pytest.raises(NoPairAvailable, match="excluded"):
        sampler.sample(pair_counts={}, exclude=every)


def test_exclusion_falls_back_to_other_pairs_then_other_prompts():
    pool = make_pool({"p1": ["A", "B"], "p2": ["C"]}, clips_per_cell=1)
    system, prompt = info(pool)
    sampler = PairSampler(pool, seed=9)
    heard = {frozenset(("A-p1-0", "B-p1-0"))}
    for _ in range(50):
        a, b = sampler.sample(pair_counts={}, exclude=heard)
        assert "C" in (system[a], system[b]) and prompt[a] != prompt[b]


def test_deterministic_per_seed_and_random_sides():
    first = [PairSampler(FULL, seed=10).sample(pair_counts={}) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    a, b = PairSampler(FULL, seed=10), PairSampler(FULL, seed=11)
    assert [a.sample(pair_counts={}) for _ in range(20)] != [
        b.sample(pair_counts={}) for _ in range(20)
    ]
    pool = make_pool({"p1": ["A", "B"]})
    system, _ = info(pool)
    sampler = PairSampler(pool, seed=12)
    first_is_a = sum(system[sampler.sample(pair_counts={})[0]] == "A" for _ in range(1000))
    assert 400 < first_is_a < 600


def test_thread_safe_under_concurrent_calls():
    system, _ = info(FULL)
    sampler = PairSampler(FULL, seed=13)
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(200):
                results.append(sampler.sample(pair_counts={}))
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 800
    assert all(system[a] != system[b] for a, b in results)


def test_pair_key():
    assert pair_key("b", "a") == ("a", "b")
    with pytest.raises(ValueError):
        pair_key("a", "a")


def test_bad_pools_are_refused():
    with pytest.raises(ValueError, match="two systems"):
        PairSampler(make_pool({"p1": ["A"]}))
    with pytest.raises(ValueError, match="unique"):
        PairSampler(pd.concat([FULL, FULL.iloc[:1]]))
    with pytest.raises(ValueError, match="prompt"):
        PairSampler(FULL.drop(columns="prompt"))
    with pytest.raises(ValueError, match="mode"):
        PairSampler(FULL, mode="greedy")

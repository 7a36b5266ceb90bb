"""APEX-informed ratings, sandwich intervals and the flip count: known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from annotation import informed
from annotation.informed import apex_strengths, fit_informed, flips_to_change_top
from annotation.ratings import fit_bradley_terry

POINTS = 400.0 / math.log(10.0)
STRENGTH = {f"s{n}": v for n, v in enumerate([1.0, 0.6, 0.3, 0.0, -0.4, -0.7, -0.8])}


def simulate(n: int, seed: int, apex: dict[str, float] | None = None) -> pd.DataFrame:
    """Bradley-Terry votes with 10% ties and 5% both-bad; APEX predictions from ``apex``."""
    rng = np.random.default_rng(seed)
    names = np.array(sorted(STRENGTH))
    s = np.array([STRENGTH[x] for x in names])
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)
    pref = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-(s[a] - s[b]))), "A", "B")
    u = rng.random(n)
    pref = np.where(u < 0.10, "TIE", np.where(u < 0.15, "BOTH_BAD", pref))
    votes = pd.DataFrame({"system_a": names[a], "system_b": names[b], "preference": pref})
    if apex is not None:
        m = np.array([apex[x] for x in names])
        votes["apex_p_a"] = 1.0 / (1.0 + np.exp(-(m[a] - m[b])))
    return votes


def board(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """A hand-made board: (system_a, system_b, preference, how many times)."""
    out = [(a, b, p) for a, b, p, n in rows for _ in range(n)]
    return pd.DataFrame(out, columns=["system_a", "system_b", "preference"])


@pytest.mark.parametrize("l2", [None, 1.0])
def test_zero_prior_weight_is_the_plain_fit(l2):
    votes = simulate(3000, seed=1)
    prior = pd.Series({k: -v for k, v in STRENGTH.items()})  # a wrong prior, weighted zero
    informed = fit_informed(votes, prior, l2=l2, weight=1.0, prior_sd=math.inf).ratings
    plain = fit_bradley_terry(votes, l2=l2)
    assert informed.index.tolist() == plain.index.tolist()
    np.testing.assert_allclose(informed["rating"], plain["rating"], atol=1e-6, rtol=0)
    assert (informed["votes"] == plain["votes"]).all()


def test_no_votes_returns_the_prior():
    prior = pd.Series({"x": 0.5, "y": 0.0, "z": -0.5})
    empty = board([])
    fit = fit_informed(empty, prior)
    np.testing.assert_allclose(fit.ratings["rating"], 1000 + POINTS * prior, atol=1e-9)
    assert fit.ratings.index.tolist() == ["x", "y", "z"]
    assert (fit.ratings["votes"] == 0).all()
    assert (fit.ratings["ci_low"] < fit.ratings["rating"]).all()
    fixed = fit_informed(empty, prior, weight=1.0, prior_sd=0.3).ratings
    np.testing.assert_allclose(fixed["rating"], 1000 + POINTS * prior, atol=1e-9)


def test_the_hyperprior_keeps_the_spread_off_zero_and_beta_uniform():
    grid = np.meshgrid(informed.SCALE_GRID, informed.SD_GRID, indexing="ij")
    beta, sd = (g.ravel() for g in grid)
    log_w = informed._log_hyperprior(beta, sd, np.array([0.7, 0.0, -0.7]))
    w = np.exp(log_w).reshape(grid[0].shape)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)  # beta uniform: no votes returns the prior
    ignored, face_value = w[0], w[list(informed.SCALE_GRID).index(1.0)]
    assert ignored[0] < 1e-3 * ignored.max()  # APEX ignored: tau = 0.05 is a spread near 0
    assert face_value[0] > 20 * ignored[0]  # APEX explains the spread: its residual may be small


def test_apex_strengths_recover_the_predictions_order():
    apex = {k: 0.5 * v for k, v in STRENGTH.items()}
    m = apex_strengths(simulate(2000, seed=2, apex=apex))
    expected = pd.Series(apex) - np.mean(list(apex.values()))
    np.testing.assert_allclose(m.reindex(expected.index), expected, atol=0.02)


def test_the_prior_weight_follows_agreement():
    agree = fit_informed(simulate(1500, seed=3, apex=STRENGTH))
    wrong = fit_informed(simulate(1500, seed=3, apex={k: -v for k, v in STRENGTH.items()}))
    assert agree.weight > 0.7
    assert wrong.weight < 0.15  # the grid step is 0.25; the evidence sits on 0
    assert agree.prior_votes > wrong.prior_votes


def test_an_informative_prior_helps_a_young_board():
    votes = simulate(300, seed=4, apex=STRENGTH)
    informed = fit_informed(votes).ratings
    plain = fit_bradley_terry(votes, l2=1.0, interval="sandwich")
    truth = 1000 + POINTS * (pd.Series(STRENGTH) - np.mean(list(STRENGTH.values())))

    def error(table: pd.DataFrame) -> float:
        return float(((table["rating"] - truth.reindex(table.index)) ** 2).mean() ** 0.5)

    assert error(informed) < 0.7 * error(plain)
    assert (informed["ci_high"] - informed["ci_low"]).mean() < (
        plain["ci_high"] - plain["ci_low"]
    ).mean()


def test_sandwich_matches_the_bootstrap_on_a_large_set():
    """Tolerance: the half-widths agree within 10% per system (1,000 bootstrap rounds put
    about 5% noise on a 95% percentile) and within 3% on average; both centre on the fit."""
    votes = simulate(60_000, seed=5)
    sandwich = fit_bradley_terry(votes, l2=1.0, interval="sandwich")
    boot = fit_bradley_terry(votes, l2=1.0, bootstrap_rounds=1000, seed=0).loc[sandwich.index]
    ratio = (sandwich["ci_high"] - sandwich["ci_low"]) / (boot["ci_high"] - boot["ci_low"])
    assert ratio.between(0.9, 1.1).all(), ratio
    assert abs(ratio.mean() - 1.0) < 0.03
    mid = (boot["ci_high"] + boot["ci_low"]) / 2
    assert ((mid - sandwich["rating"]).abs() < 0.1 * (boot["ci_high"] - boot["ci_low"])).all()


def test_posterior_interval_adds_the_ridge_pull_on_young_boards():
    """Small board: the posterior interval (the ridge as a prior) is wider than the sandwich
    (it spans the pull to the mean); large board: it is the model's inverse Hessian, up to
    about 7% wider than the sandwich with 10% ties (a tie varies less than the model says)."""
    for n, low, high in ((60, 1.1, 2.0), (60_000, 1.0, 1.12)):
        votes = simulate(n, seed=5)
        sandwich = fit_bradley_terry(votes, l2=1.0, interval="sandwich")
        posterior = fit_bradley_terry(votes, l2=1.0, interval="posterior").loc[sandwich.index]
        assert (posterior["rating"] == sandwich["rating"]).all()
        ratio = (posterior["ci_high"] - posterior["ci_low"]) / (
            sandwich["ci_high"] - sandwich["ci_low"]
        )
        assert ratio.between(low, high).all(), (n, ratio)


def test_sandwich_is_refused_when_misspelt():
    with pytest.raises(ValueError, match="interval"):
        fit_bradley_terry(simulate(50, seed=6), interval="jackknife")


def test_flip_count_two_systems():
    # x leads 6-4: one flip makes 5-5 (a tie at the top is no change), two make y first.
    assert flips_to_change_top(board([("x", "y", "A", 6), ("x", "y", "B", 4)]), l2=None) == 2
    # A tie flipped moves half as far: 3 wins, 1 tie, 2 losses -> flip one win (3-1-2 -> 2-1-3).
    votes = board([("x", "y", "A", 3), ("x", "y", "TIE", 1), ("y", "x", "A", 2)])
    assert flips_to_change_top(votes, l2=None) == 1
    assert flips_to_change_top(board([("x", "y", "BOTH_BAD", 3)])) is None


def _rows(counts: dict[tuple[str, str], tuple[int, int]]) -> pd.DataFrame:
    """A board from (wins of the first system, wins of the second) per pair."""
    rows = [(a, b, "A", won) for (a, b), (won, _) in counts.items()]
    return board(rows + [(a, b, "B", lost) for (a, b), (_, lost) in counts.items()])


def test_flip_count_matches_brute_force_on_a_small_board():
    counts = {("x", "y"): (7, 2), ("y", "z"): (6, 3), ("x", "z"): (5, 1)}
    leader = str(fit_bradley_terry(_rows(counts), l2=1.0).index[0])
    best = math.inf
    pairs = list(counts)
    for f in itertools.product(*[range(-counts[p][1], counts[p][0] + 1) for p in pairs]):
        total = sum(abs(x) for x in f)
        if total >= best:
            continue
        moved = {p: (counts[p][0] - x, counts[p][1] + x) for p, x in zip(pairs, f, strict=True)}
        ratings = fit_bradley_terry(_rows(moved), l2=1.0)["rating"]
        if ratings.drop(leader).max() > ratings[leader] + 1e-9:
            best = total
    assert flips_to_change_top(_rows(counts), l2=1.0) == best

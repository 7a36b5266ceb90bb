"""Ratings: invariants, agreement with expanded-row references written here, recovery of a known
order, bootstrap behaviour, thresholds and boards."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression

from annotation.ratings import fit_bradley_terry
from apex.demo import load_metadata, simulate_votes

POINTS = 400.0 / math.log(10.0)  # Elo points per nat, written out independently of the module


def simulate(
    strength: dict[str, float],
    n: int,
    *,
    seed: int,
    tie_rate: float = 0.1,
    both_bad_rate: float = 0.0,
) -> pd.DataFrame:
    """Bradley-Terry battles among systems with known strengths (nats)."""
    rng = np.random.default_rng(seed)
    names = np.array(sorted(strength))
    s = np.array([strength[x] for x in names])
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)
    p_a = 1.0 / (1.0 + np.exp(-(s[a] - s[b])))
    pref = np.where(rng.random(n) < p_a, "A", "B")
    u = rng.random(n)
    pref = np.where(u < tie_rate, "TIE", pref)
    pref = np.where((u >= tie_rate) & (u < tie_rate + both_bad_rate), "BOTH_BAD", pref)
    return pd.DataFrame({"system_a": names[a], "system_b": names[b], "preference": pref})


def expanded_rows(battles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Music Arena's design: one +1/-1 row per battle, a tie as two rows of weight 0.5."""
    rated = battles[battles["preference"] != "BOTH_BAD"]
    systems = sorted(set(rated["system_a"]) | set(rated["system_b"]))
    col = {s: n for n, s in enumerate(systems)}
    rows = len(rated)
    x = np.zeros((rows, len(systems)))
    x[np.arange(rows), rated["system_a"].map(col)] = 1.0
    x[np.arange(rows), rated["system_b"].map(col)] = -1.0
    tie = (rated["preference"] == "TIE").to_numpy()
    y = (rated["preference"] == "A").to_numpy().astype(int)
    y[tie] = 1
    w = np.where(tie, 0.5, 1.0)
    x = np.vstack([x, x[tie]])
    y = np.concatenate([y, np.zeros(tie.sum(), dtype=int)])
    w = np.concatenate([w, np.full(tie.sum(), 0.5)])
    return x, y, w, systems


STRENGTH = {"alpha": 1.2, "bravo": 0.6, "charlie": 0.1, "delta": -0.3, "echo": -0.9}


@pytest.fixture(scope="module")
def battles() -> pd.DataFrame:
    return simulate(STRENGTH, 3000, seed=1)


def swapped(battles: pd.DataFrame) -> pd.DataFrame:
    flipped = battles["preference"].map({"A": "B", "B": "A", "TIE": "TIE", "BOTH_BAD": "BOTH_BAD"})
    return pd.DataFrame(
        {"system_a": battles["system_b"], "system_b": battles["system_a"], "preference": flipped}
    )


@pytest.mark.parametrize("l2", [None, 1.0])
def test_swapping_sides_leaves_ratings_unchanged(battles, l2):
    base = fit_bradley_terry(battles, l2=l2)
    other = fit_bradley_terry(swapped(battles), l2=l2)
    pd.testing.assert_frame_equal(base, other.loc[base.index], atol=1e-6, rtol=0)


@pytest.mark.parametrize("l2", [None, 0.3])
def test_ratings_are_centred_at_1000(battles, l2):
    ratings = fit_bradley_terry(battles, l2=l2)
    assert ratings["rating"].mean() == pytest.approx(1000.0, abs=1e-6)
    assert list(ratings["rating"]) == sorted(ratings["rating"], reverse=True)
    assert ratings.index.name == "system"


def test_unregularised_matches_rowwise_maximum_likelihood(battles):
    x, y, w, systems = expanded_rows(battles)

    def nll(theta):
        z = x @ theta
        loss = np.sum(w * (np.logaddexp(0, z) - y * z))
        grad = x.T @ (w * (1.0 / (1.0 + np.exp(-z)) - y))
        return loss, grad

    res = minimize(nll, np.zeros(len(systems)), jac=True, method="BFGS", options={"gtol": 1e-10})
    reference = 1000.0 + POINTS * (res.x - res.x.mean())
    ours = fit_bradley_terry(battles).loc[systems, "rating"].to_numpy()
    assert np.max(np.abs(ours - reference)) < 0.01


@pytest.mark.parametrize("c", [0.02, 1.0])
def test_l2_matches_sklearn_on_expanded_rows(battles, c):
    x, y, w, systems = expanded_rows(battles)
    lr = LogisticRegression(C=c, fit_intercept=False, tol=1e-10, max_iter=10_000)
    lr.fit(x, y, sample_weight=w)
    scores = POINTS * lr.coef_[0]
    reference = scores - scores.mean() + 1000.0  # Music Arena's mean centring
    ours = fit_bradley_terry(battles, l2=c).loc[systems, "rating"].to_numpy()
    assert np.max(np.abs(ours - reference)) < 0.01


def test_l2_shrinks_towards_the_mean(battles):
    spread = {c: fit_bradley_terry(battles, l2=c)["rating"].std() for c in (None, 1.0, 0.001)}
    assert spread[None] > spread[1.0] > spread[0.001]


def test_two_systems_closed_form_with_ties():
    # x beats y 30 times, loses 10, ties 20: score 40 of 60, so the gap is ln(40/20) nats.
    prefs = ["A"] * 30 + ["B"] * 10 + ["TIE"] * 20
    table = pd.DataFrame({"system_a": "x", "system_b": "y", "preference": prefs})
    ratings = fit_bradley_terry(table)
    gap = ratings.loc["x", "rating"] - ratings.loc["y", "rating"]
    assert gap == pytest.approx(POINTS * math.log(2.0), abs=1e-6)
    assert ratings["votes"].tolist() == [60, 60]


def test_simulated_votes_recover_the_latent_order():
    strength = {f"sys{k:02d}": 0.25 * k for k in range(10)}
    ratings = fit_bradley_terry(simulate(strength, 20_000, seed=7))
    rho = spearmanr(ratings.index.map(strength), ratings["rating"]).statistic
    assert rho == pytest.approx(1.0)
    # Gaps come back on the right scale: within 15% of the truth end to end.
    span = ratings["rating"].max() - ratings["rating"].min()
    assert span == pytest.approx(POINTS * 0.25 * 9, rel=0.15)


def test_demo_votes_recover_the_system_order(small_demo_corpus):
    metadata = load_metadata(small_demo_corpus)
    votes = simulate_votes(metadata, 6000, seed=0)
    ratings = fit_bradley_terry(votes)
    latent = metadata.groupby("system")["quality"].mean()
    rho = spearmanr(latent.loc[ratings.index], ratings["rating"]).statistic
    assert rho > 0.9


def test_both_bad_has_no_effect(battles):
    noisy = pd.concat(
        [battles, simulate(STRENGTH, 500, seed=3, tie_rate=0.0, both_bad_rate=1.0)],
        ignore_index=True,
    )
    assert (noisy["preference"] == "BOTH_BAD").sum() == 500
    for l2 in (None, 1.0):
        pd.testing.assert_frame_equal(
            fit_bradley_terry(battles, l2=l2), fit_bradley_terry(noisy, l2=l2)
        )


def test_bootstrap_interval_contains_estimate_and_narrows():
    small = fit_bradley_terry(simulate(STRENGTH, 1000, seed=2), bootstrap_rounds=300, seed=5)
    large = fit_bradley_terry(simulate(STRENGTH, 20_000, seed=2), bootstrap_rounds=300, seed=5)
    for table in (small, large):
        assert (table["ci_low"] <= table["rating"]).all()
        assert (table["rating"] <= table["ci_high"]).all()
    width_small = (small["ci_high"] - small["ci_low"]).mean()
    width_large = (large["ci_high"] - large["ci_low"]).mean()
    # 20x the data: about sqrt(20) = 4.5x narrower; allow wide slack for bootstrap noise.
    assert 2.5 < width_small / width_large < 8.0


def test_bootstrap_is_deterministic_per_seed_and_off_by_default(battles):
    a = fit_bradley_terry(battles, bootstrap_rounds=50, seed=11)
    b = fit_bradley_terry(battles, bootstrap_rounds=50, seed=11)
    c = fit_bradley_terry(battles, bootstrap_rounds=50, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    assert fit_bradley_terry(battles)[["ci_low", "ci_high"]].isna().all().all()


def test_min_votes_drops_systems_and_their_battles(battles):
    rare = pd.DataFrame(
        {"system_a": ["rare"] * 5, "system_b": ["alpha"] * 5, "preference": ["A"] * 5}
    )
    both = pd.concat([battles, rare], ignore_index=True)
    ratings = fit_bradley_terry(both, min_votes=10)
    assert "rare" not in ratings.index
    assert (ratings["votes"] >= 10).all()
    pd.testing.assert_frame_equal(ratings, fit_bradley_terry(battles, min_votes=10))
    assert "rare" in fit_bradley_terry(both, l2=1.0).index


def test_min_votes_is_applied_until_stable():
    # Votes: a 5, b 3, c 2, d 4. With 3 needed, c goes; b is then left with 2 and goes too;
    # a and d keep their 3 battles against each other.
    rows = [("a", "b", "A"), ("a", "b", "B"), ("b", "c", "A"), ("c", "d", "B")]
    rows += [("a", "d", "A")] * 3
    table = pd.DataFrame(rows, columns=["system_a", "system_b", "preference"])
    ratings = fit_bradley_terry(table, min_votes=3)
    assert sorted(ratings.index) == ["a", "d"]
    assert ratings["votes"].tolist() == [3, 3]


def test_anchor_shifts_the_board(battles):
    ratings = fit_bradley_terry(battles, anchor=("charlie", 1114.0))
    plain = fit_bradley_terry(battles)
    assert ratings.loc["charlie", "rating"] == pytest.approx(1114.0)
    gaps = ratings["rating"] - plain.loc[ratings.index, "rating"]
    assert np.allclose(gaps, gaps.iloc[0])


def test_bad_input_is_refused(battles):
    with pytest.raises(ValueError, match="preference"):
        fit_bradley_terry(battles.drop(columns="preference"))
    with pytest.raises(ValueError, match="MAYBE"):
        fit_bradley_terry(battles.assign(preference="MAYBE"))
    with pytest.raises(ValueError, match="itself"):
        fit_bradley_terry(battles.assign(system_b=battles["system_a"]))
    with pytest.raises(ValueError, match="positive"):
        fit_bradley_terry(battles, l2=0.0)


def test_empty_input_gives_an_empty_board():
    empty = pd.DataFrame({"system_a": ["x"], "system_b": ["y"], "preference": ["BOTH_BAD"]})
    ratings = fit_bradley_terry(empty)
    assert ratings.empty
    assert list(ratings.columns) == ["rating", "ci_low", "ci_high", "votes"]

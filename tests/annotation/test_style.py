"""Style-controlled Bradley-Terry: known answers, and the covariate-free case is today's fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotation.ratings import POINTS_PER_NAT, fit_bradley_terry
from annotation.style import fit_style_controlled, style_features
from apex.demo.listeners import loudness_biased_votes

STRENGTHS = {"s0": 0.0, "s1": 0.3, "s2": 0.6, "s3": 0.9, "s4": 1.2}  # nats
#: The weakest system makes the loudest clips: 12 LU between s0 and s4.
LOUDNESS = {"s0": -8.0, "s1": -11.0, "s2": -14.0, "s3": -17.0, "s4": -20.0}
EFFECT = 0.15  # nats per LU: 12 LU outweigh the 1.2-nat quality gap


@pytest.fixture(scope="module")
def biased() -> pd.DataFrame:
    return loudness_biased_votes(STRENGTHS, LOUDNESS, effect_per_lu=EFFECT, n_votes=6000)


@pytest.mark.parametrize("l2", [None, 1.0])
def test_without_covariates_it_is_the_plain_fit(biased, l2) -> None:
    plain = fit_bradley_terry(biased, l2=l2)
    styled = fit_style_controlled(biased, covariates=(), l2=l2)
    assert styled.effects.empty and styled.used_votes == len(biased)
    joined = plain.join(styled.ratings, rsuffix="_style")
    assert np.allclose(joined["rating"], joined["rating_style"], atol=1e-6)
    assert (joined["votes"] == joined["votes_style"]).all()


def test_plain_fit_is_biased_and_the_controlled_fit_recovers_the_order(biased) -> None:
    truth = sorted(STRENGTHS, key=STRENGTHS.get, reverse=True)  # s4 best
    plain = fit_bradley_terry(biased, l2=1.0)
    assert list(plain.index) != truth
    assert plain.loc["s0", "rating"] > plain.loc["s4", "rating"]  # the loud weak one wins
    fit = fit_style_controlled(biased, bootstrap_rounds=100, seed=1)
    assert list(fit.ratings.index) == truth
    gaps = fit.ratings["rating"] - fit.ratings.loc["s0", "rating"]
    for system, strength in STRENGTHS.items():  # the true gaps, within a few points
        assert gaps[system] == pytest.approx(strength * POINTS_PER_NAT, abs=25)
    loud = fit.effects.loc["loudness"]
    assert loud["per_unit"] == pytest.approx(EFFECT * POINTS_PER_NAT, rel=0.15)
    assert loud["ci_low"] < loud["per_sd"] < loud["ci_high"] and loud["ci_low"] > 0
    assert loud["win_rate_per_sd"] > 0.5
    # Length, vocals and clip order play no part in these votes: their intervals cover zero.
    for name in ("duration", "vocals", "position"):
        assert fit.effects.loc[name, "ci_low"] < 0 < fit.effects.loc[name, "ci_high"], name
    assert (fit.ratings["ci_low"] < fit.ratings["rating"]).all()


def test_features_are_normalised_differences() -> None:
    votes = pd.DataFrame(
        {
            "duration_a": [30.0, 10.0], "duration_b": [10.0, 10.0],
            "loudness_a": [-10.0, None], "loudness_b": [-14.0, -9.0],
            "instrumental_a": [False, True], "instrumental_b": [True, None],
        }
    )  # fmt: skip
    got = style_features(votes)
    assert got.loc[0].tolist() == [0.5, 4.0, 1.0, 1.0]  # position: 1 on every vote
    assert got.loc[1, "duration"] == 0.0 and got.loc[1, ["loudness", "vocals"]].isna().all()


def test_missing_and_constant_covariates_are_reported(biased) -> None:
    votes = biased.copy()
    votes.loc[:99, "loudness_a"] = np.nan  # 100 votes without a measure
    votes["duration_a"] = votes["duration_b"] = 30.0  # never varies
    fit = fit_style_controlled(votes)
    rated = int(biased["preference"].isin(["A", "B", "TIE"]).sum())
    assert fit.missing_votes == 100 and fit.used_votes == rated - 100
    assert fit.dropped == ("duration",)
    assert list(fit.effects.index) == ["loudness", "vocals", "position"]


def test_bad_inputs_say_what_is_wrong(biased) -> None:
    with pytest.raises(ValueError, match="unknown covariate"):
        fit_style_controlled(biased, covariates=("tempo",))
    with pytest.raises(ValueError, match="positive"):
        fit_style_controlled(biased, l2=0.0)
    with pytest.raises(ValueError, match="preference"):
        fit_style_controlled(biased.assign(preference="maybe"))
    empty = fit_style_controlled(biased.iloc[:0])
    assert empty.ratings.empty and empty.used_votes == 0


def test_position_effect_is_recovered() -> None:
    """B wins 55% of decisive votes between equal systems: the effect is logit(0.45)."""
    rng = np.random.default_rng(7)
    n = 20_000
    names = np.array(["s0", "s1", "s2", "s3"])
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    strength = np.array([0.0, 0.2, 0.4, 0.6])
    p_a = 1.0 / (1.0 + np.exp(-(strength[a] - strength[b] + np.log(0.45 / 0.55))))
    pref = np.where(rng.random(n) < p_a, "A", "B")
    votes = pd.DataFrame({"system_a": names[a], "system_b": names[b], "preference": pref})
    fit = fit_style_controlled(votes, covariates=("position",), l2=None, bootstrap_rounds=50)
    pos = fit.effects.loc["position"]
    assert pos["sd"] == 1.0 and pos["unit"].startswith("clip A")
    assert pos["win_rate_per_sd"] == pytest.approx(0.45, abs=0.01)
    assert pos["ci_low"] < pos["per_sd"] < pos["ci_high"] < 0
    gaps = fit.ratings["rating"] - fit.ratings.loc["s0", "rating"]
    assert gaps["s3"] == pytest.approx(0.6 * POINTS_PER_NAT, abs=20)


@pytest.mark.parametrize("l2", [None, 1.0])
def test_sandwich_interval_matches_the_bootstrap(biased, l2) -> None:
    """On 6,000 votes the closed-form interval has the bootstrap's centre and width (within 15%)."""
    boot = fit_style_controlled(biased, l2=l2, bootstrap_rounds=300, seed=3)
    sand = fit_style_controlled(biased, l2=l2, interval="sandwich")
    assert np.allclose(sand.ratings["rating"], boot.ratings.loc[sand.ratings.index, "rating"])
    for mine, theirs in ((sand.ratings, boot.ratings), (sand.effects, boot.effects)):
        theirs = theirs.loc[mine.index]
        width = mine["ci_high"] - mine["ci_low"]
        ratio = width / (theirs["ci_high"] - theirs["ci_low"])
        assert ratio.between(0.85, 1.15).all(), ratio
        centre = (mine["ci_high"] + mine["ci_low"]) / 2 - (theirs["ci_high"] + theirs["ci_low"]) / 2
        assert (centre.abs() < 0.15 * width).all(), centre
    with pytest.raises(ValueError, match="interval must be"):
        fit_style_controlled(biased, interval="profile")

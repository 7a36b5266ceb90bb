"""Simulated arena votes: shape, determinism, pairing rules, and agreement with the latent model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apex.demo import load_metadata, simulate_votes
from apex.demo.listeners import DEFAULT_START, VOTE_COLUMNS, outcome_probabilities

PREFERENCES = {"A", "B", "TIE", "BOTH_BAD"}


@pytest.fixture(scope="module")
def meta(small_demo_corpus):
    return load_metadata(small_demo_corpus)


@pytest.fixture(scope="module")
def many(meta):
    """Enough votes for rates to be estimated within about a percentage point."""
    return simulate_votes(meta, 40_000, seed=5)


def test_shape_vocabulary_and_pairing(meta):
    votes = simulate_votes(meta, 500, seed=1)
    assert list(votes.columns) == list(VOTE_COLUMNS) and len(votes) == 500
    assert set(votes["preference"]) <= PREFERENCES
    assert votes["battle_uuid"].is_unique
    assert (votes["system_a"] != votes["system_b"]).all()
    assert (votes["clip_a"] != votes["clip_b"]).all()
    # Every demo prompt has clips of several systems, so every battle stays on one prompt.
    prompt_of = meta.set_index("clip_id")["prompt"]
    assert (prompt_of[votes["clip_a"]].to_numpy() == prompt_of[votes["clip_b"]].to_numpy()).all()
    assert (votes["prompt"].to_numpy() == prompt_of[votes["clip_a"]].to_numpy()).all()
    system_of = meta.set_index("clip_id")["system"]
    assert (system_of[votes["clip_a"]].to_numpy() == votes["system_a"].to_numpy()).all()
    stamps = votes["timestamp"]
    assert str(stamps.dt.tz) == "UTC" and stamps.is_monotonic_increasing and stamps.is_unique
    assert stamps.iloc[0] > pd.Timestamp(DEFAULT_START)
    assert votes["voter"].str.startswith("demo-voter-").all()
    counts = votes["voter"].value_counts()
    assert 1 < len(counts) < 500 and counts.iloc[0] > 3 * counts.median(), "heavy-tailed voters"
    assert votes["p_a"].between(0, 1).all()


def test_deterministic_for_a_seed(meta):
    first = simulate_votes(meta, 300, seed=2)
    pd.testing.assert_frame_equal(first, simulate_votes(meta, 300, seed=2))
    other = simulate_votes(meta, 300, seed=3)
    assert not first["clip_a"].equals(other["clip_a"])
    shuffled = meta.sample(frac=1.0, random_state=0)  # row order of the metadata does not matter
    pd.testing.assert_frame_equal(first, simulate_votes(shuffled, 300, seed=2))


def test_latent_model_is_symmetric_and_monotone():
    q = np.linspace(1.0, 5.0, 9)
    qa, qb = np.meshgrid(q, q)
    forward = outcome_probabilities(qa.ravel(), qb.ravel())
    backward = outcome_probabilities(qb.ravel(), qa.ravel())
    total = forward["A"] + forward["B"] + forward["TIE"] + forward["BOTH_BAD"]
    assert total == pytest.approx(np.ones_like(total))
    assert forward["p_a"] + backward["p_a"] == pytest.approx(np.ones_like(total))
    assert forward["A"] == pytest.approx(backward["B"])
    assert outcome_probabilities(np.array([3.0]), np.array([3.0]))["p_a"][0] == pytest.approx(0.5)
    gap = qa.ravel() - qb.ravel()
    assert np.all(np.diff(forward["p_a"][np.argsort(gap, kind="stable")]) >= -1e-12)


def test_win_rates_track_bradley_terry(meta, many):
    quality = meta.set_index("clip_id")["quality"]
    qa, qb = quality[many["clip_a"]].to_numpy(), quality[many["clip_b"]].to_numpy()
    # The reported p_a rises with the quality gap: it is the model's, not noise.
    assert np.corrcoef(qa - qb, many["p_a"])[0, 1] > 0.9
    decisive = many[many["preference"].isin(["A", "B"])].copy()
    decisive["won"] = decisive["preference"] == "A"
    decisive["bin"] = pd.qcut(decisive["p_a"], 10, labels=False)
    calibration = decisive.groupby("bin").agg(p=("p_a", "mean"), won=("won", "mean"))
    assert (calibration["won"] - calibration["p"]).abs().max() < 0.05
    assert calibration["won"].is_monotonic_increasing
    pairs = decisive.groupby(["system_a", "system_b"]).agg(
        n=("won", "size"), p=("p_a", "mean"), won=("won", "mean")
    )
    pairs = pairs[pairs["n"] >= 300]
    assert len(pairs) >= 20
    assert (pairs["won"] - pairs["p"]).abs().max() < 0.08
    assert np.corrcoef(pairs["won"], pairs["p"])[0, 1] > 0.95


def test_ties_and_both_bad_at_plausible_rates(meta, many):
    rates = many["preference"].value_counts(normalize=True)
    assert 0.08 <= rates["TIE"] <= 0.18
    assert 0.02 <= rates["BOTH_BAD"] <= 0.12
    assert abs(rates["A"] - rates["B"]) < 0.03, "no side bias"
    quality = meta.set_index("clip_id")["quality"]
    qa, qb = quality[many["clip_a"]].to_numpy(), quality[many["clip_b"]].to_numpy()
    best = np.maximum(qa, qb)
    both_bad = many["preference"].eq("BOTH_BAD").to_numpy()
    poor, good = best <= np.quantile(best, 0.25), best >= np.quantile(best, 0.75)
    assert both_bad[poor].mean() > 3 * both_bad[good].mean()
    gap = np.abs(qa - qb)
    tie = many["preference"].eq("TIE").to_numpy()
    close, far = gap <= np.quantile(gap, 0.25), gap >= np.quantile(gap, 0.75)
    assert tie[close].mean() > 1.5 * tie[far].mean()
    # The sampler draws outcomes at the model's own probabilities.
    expected = outcome_probabilities(qa, qb)
    for name in ("TIE", "BOTH_BAD", "A"):
        assert rates[name] == pytest.approx(expected[name].mean(), abs=0.01)


def test_pairs_fall_back_to_other_prompts_and_edge_cases(meta):
    lonely = meta.groupby("system").head(1).copy()
    lonely["prompt"] = [f"prompt {i}" for i in range(len(lonely))]  # one clip per prompt
    votes = simulate_votes(lonely, 200, seed=0)
    assert (votes["system_a"] != votes["system_b"]).all()
    empty = simulate_votes(meta, 0)
    assert empty.empty and list(empty.columns) == list(VOTE_COLUMNS)
    with pytest.raises(ValueError, match="two different systems"):
        simulate_votes(meta[meta["system"] == "demo-virtuoso"], 10)
    with pytest.raises(ValueError, match="n="):
        simulate_votes(meta, -1)
    with pytest.raises(ValueError, match="quality"):
        simulate_votes(meta.drop(columns="quality"), 10)


def test_simulated_votes_draw_from_the_whole_vote_vocabulary() -> None:
    from apex.demo import listeners as votes
    from apex.tasks import PREFERENCES

    assert sorted(votes._DRAW_ORDER) == sorted(PREFERENCES)


def test_one_simulator_its_presets_are_the_old_listeners() -> None:
    from apex.demo.listeners import ARENA, HIDDEN, Taste, choose, listener_votes

    ua, ub = np.array([0.0, 1.0, -0.5, 2.0]), np.array([0.5, 0.0, 0.5, -1.0])
    arena = outcome_probabilities(ua, ub, ARENA)
    p_a = 1.0 / (1.0 + np.exp(-(ua - ub)))  # Bradley-Terry, 1 logit per nat
    assert arena["TIE"] == pytest.approx(np.full(4, 0.05))
    assert arena["A"] == pytest.approx(0.95 * p_a) and arena["BOTH_BAD"] == pytest.approx(0)
    biased = outcome_probabilities(ua, ub, ARENA, bias=0.15 * np.array([12.0, 0, 0, -3]))
    assert biased["p_a"] == pytest.approx(1 / (1 + np.exp(-(ua - ub + [1.8, 0, 0, -0.45]))))
    # Hidden-taste listeners never tie and pick A exactly when one uniform draw is below p_a.
    utility = pd.Series(np.linspace(-1, 1, 6), index=list("abcdef"))
    a, b = np.array(list("abcabc")), np.array(list("defdef"))
    picks = listener_votes(utility, a, b, np.random.default_rng(3))
    margin = utility[a].to_numpy() - utility[b].to_numpy()
    expected = np.random.default_rng(3).random(6) < 1 / (1 + np.exp(-HIDDEN.scale * margin))
    assert list(picks) == list(np.where(expected, "A", "B"))
    drawn = choose(
        outcome_probabilities(ua, ub, Taste(scale=1.0, tie=1.0)), np.random.default_rng()
    )
    assert set(drawn) == {"TIE"}

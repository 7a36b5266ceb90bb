"""The paper's arena protocol on battles with a known answer; ``apex eval arena`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.evaluation import cv as arena_cv
from apex.evaluation.arena import ArenaEvalError, evaluate_arena, evaluate_features
from apex.evaluation.report import format_report
from apex.tasks import ENGAGEMENT, SCORE_NAMES

FAST = {"n_boot": 100, "n_perm": 0}


def _battles(n_clips: int = 120, n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Battles decided by a latent quality ``q`` (A wins iff q_a > q_b), plus ties and both-bad."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(1, 5, n_clips)
    a = rng.integers(n_clips, size=n)
    b = (a + 1 + rng.integers(n_clips - 1, size=n)) % n_clips
    pref = np.where(q[a] > q[b], "A", "B").astype(object)
    pref[:20], pref[20:30] = "TIE", "BOTH_BAD"
    system = np.array([f"sys{i % 7}" for i in range(n_clips)])
    frame = pd.DataFrame(
        {
            "clip_a": [f"c{i}" for i in a],
            "clip_b": [f"c{i}" for i in b],
            "preference": pref,
            "is_instrumental": rng.random(n) < 0.5,
            "system_a": system[a],
            "system_b": system[b],
        }
    )
    # prompts nested in pairs, so "prompt+pair" has one group per pair
    pair = arena_cv.pair_labels(frame["system_a"], frame["system_b"])
    frame["prompt"] = [f"{p}/{k}" for p, k in zip(pair, rng.integers(3, size=n), strict=True)]
    return frame, q


def _predictions(values: np.ndarray) -> pd.DataFrame:
    index = [f"c{i}" for i in range(len(values))]
    cols = {n: values * 20 if n in ENGAGEMENT else values for n in SCORE_NAMES}
    return pd.DataFrame(cols, index=index)


def _p(q: np.ndarray, battles: pd.DataFrame) -> np.ndarray:
    qa = q[battles["clip_a"].str[1:].astype(int)]
    qb = q[battles["clip_b"].str[1:].astype(int)]
    return 1 / (1 + np.exp(-(qa - qb)))


def _lr(report: dict, scheme: str = "paper") -> dict:
    return report["schemes"][scheme]["models"]["logistic_regression"]


def test_a_perfect_predictor_scores_auc_one() -> None:
    battles, q = _battles()
    report = evaluate_arena(
        battles, _predictions(q), p_compare=_p(q, battles), svm="fixed", schemes=("paper",), **FAST
    )
    rows = {**report["schemes"]["paper"]["models"], **report["rules"]}
    for model in ("logistic_regression", "svm", "likes_rule"):
        for group in ("overall", "instrumental", "vocal"):
            assert rows[model]["auc"][group] > 0.99, (model, group)
            assert rows[model]["auc_ci"][group][0] > 0.98, (model, group)
    assert report["apex_compare"]["auc"]["overall"] == 1.0
    assert report["apex_compare"]["accuracy"] == 1.0
    assert report["apex_compare"]["orientation"]["sign"] == "agrees"
    counts = report["counts"]
    assert (counts["TIE"], counts["BOTH_BAD"], counts["used"]) == (20, 10, 370)
    assert counts["excluded"] == {"TIE": 20, "BOTH_BAD": 10, "no prediction for a clip": 0}
    assert all(r["sign"] == "agrees" for r in report["orientation"].values())
    assert report["flags"] == []


def test_counts_by_board_add_up() -> None:
    battles, q = _battles()
    report = evaluate_arena(battles, _predictions(q), svm="off", schemes=("paper",), **FAST)
    b = report["counts"]["boards"]
    instr = battles["is_instrumental"].to_numpy()
    assert b["instrumental"]["battles"] == instr.sum() and b["vocal"]["battles"] == (~instr).sum()
    for key in ("battles", "decisive", "A", "B", "TIE", "BOTH_BAD", "unscored"):
        assert b["overall"][key] == b["instrumental"][key] + b["vocal"][key], key
    assert b["overall"]["decisive"] == 370 and b["overall"]["TIE"] == 20
    assert b["instrumental"]["TIE"] == (instr[:20]).sum()


def test_a_label_encoding_feature_scores_auc_one_under_every_fold_scheme() -> None:
    battles, _ = _battles()
    used = battles[battles["preference"].isin(["A", "B"])]
    y = (used["preference"] == "A").to_numpy().astype(int)
    instr = used["is_instrumental"].to_numpy()
    x = np.column_stack([2.0 * y - 1, np.random.default_rng(0).normal(size=len(y))])
    prompts = used["prompt"].to_numpy()
    pairs = arena_cv.pair_labels(used["system_a"], used["system_b"])
    groups = {s: arena_cv.scheme_groups(s, prompts, pairs) for s in arena_cv.FOLD_SCHEMES}
    out = evaluate_features(x, y, instr, groups, n_boot=100, n_perm=99)
    assert set(out) == set(arena_cv.FOLD_SCHEMES)
    for scheme, entry in out.items():
        row = entry["models"]["logistic_regression"]
        assert row["auc"]["overall"] > 0.99 and row["accuracy"] > 0.99, scheme
        assert row["p_value"] == 0.01, scheme  # the smallest 99 permutations can give


def _prompt_biased(seed: int, n_prompts: int = 40, per_prompt: int = 10) -> tuple:
    """Battles whose outcome depends only on the prompt (each prompt favours A or B 85:15)."""
    rng = np.random.default_rng(seed)
    prompt = np.repeat(np.arange(n_prompts), per_prompt)
    favours_a = rng.random(n_prompts) < 0.5
    y = (rng.random(len(prompt)) < np.where(favours_a[prompt], 0.85, 0.15)).astype(int)
    onehot = np.eye(n_prompts)[prompt]  # the feature: which prompt it was, nothing else
    pair = prompt % 20  # prompts nested in 20 system pairs
    return onehot, y, prompt.astype(str), pair.astype(str), rng.random(len(y)) < 0.5


def test_a_prompt_only_feature_is_chance_under_grouped_folds_but_not_under_the_papers() -> None:
    x, y, prompts, pairs, instr = _prompt_biased(seed=0)
    groups = {s: arena_cv.scheme_groups(s, prompts, pairs) for s in arena_cv.FOLD_SCHEMES}
    out = evaluate_features(x, y, instr, groups, n_boot=100, n_perm=49)
    rows = {s: out[s]["models"]["logistic_regression"] for s in out}
    assert rows["paper"]["auc"]["overall"] > 0.75  # leakage: it "knows" the test prompts
    assert rows["paper"]["auc_ci"]["overall"][0] > 0.7 and rows["paper"]["p_value"] == 0.02
    for scheme in ("prompt", "pair", "prompt+pair"):
        row = rows[scheme]
        # unseen prompts get one constant per fold: each fold ranks nothing
        assert row["auc_fold_mean"] == pytest.approx(0.5), scheme
        # pooled over folds, that constant runs against each fold's balance: never above chance
        assert row["auc"]["overall"] < 0.55 and row["p_value"] > 0.05, (scheme, row)
    assert abs(rows["prompt"]["auc"]["overall"] - 0.5) < 0.1


def test_a_leaky_scheme_gap_is_flagged() -> None:
    from apex.evaluation.arena import flags

    x, y, prompts, pairs, instr = _prompt_biased(seed=1)
    groups = {s: arena_cv.scheme_groups(s, prompts, pairs) for s in ("paper", "prompt")}
    schemes = evaluate_features(x, y, instr, groups, **FAST)
    found = flags({"orientation": {}, "schemes": schemes})
    assert len(found) == 1 and "part of it is leakage" in found[0] and "by prompt" in found[0]


def test_permutation_pvalue_of_a_random_feature_is_roughly_uniform() -> None:
    pvalues = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        y = (rng.random(150) < 0.5).astype(int)
        x = rng.normal(size=(150, 3))
        out = evaluate_features(x, y, rng.random(150) < 0.5, {"paper": None}, n_boot=10, n_perm=99)
        pvalues.append(out["paper"]["models"]["logistic_regression"]["p_value"])
    pvalues = np.array(pvalues)
    assert (pvalues < 0.05).sum() <= 2, pvalues
    assert 0.2 < pvalues.mean() < 0.8 and pvalues.max() - pvalues.min() > 0.4, pvalues


def test_an_inverted_predictor_is_flagged_by_the_orientation_check() -> None:
    battles, q = _battles()
    report = evaluate_arena(
        battles, _predictions(-q), svm="fixed", schemes=("paper", "pair"), **FAST
    )
    for name, row in report["orientation"].items():
        assert row["sign"] == "inverted" and row["accuracy"] == 0.0, name
        assert row["ci"][1] < 0.05, name
    assert report["rules"]["likes_rule"]["auc"]["overall"] == 0.0
    # the classifiers learn the flipped sign and score well: the report says why
    assert _lr(report)["auc"]["overall"] > 0.99
    text = " ".join(report["flags"])
    for model, scheme in (("logistic_regression", "paper"), ("svm", "pair")):
        assert f"{model} [{scheme} folds]: AUC" in text and "inverted sign" in text
    assert "the clip with the higher score_likes loses" in text
    printed = format_report(report)
    assert "inverted" in printed and "Flags:" in printed


def test_a_constant_predictor_scores_auc_one_half() -> None:
    battles, _ = _battles()
    battles["is_instrumental"] = True  # no information at all in any feature
    constant = np.full(120, 3.0)
    report = evaluate_arena(
        battles,
        _predictions(constant),
        p_compare=np.full(400, 0.5),
        svm="fixed",
        schemes=("paper",),
        n_boot=100,
        n_perm=49,
    )
    assert report["rules"]["likes_rule"]["auc"]["overall"] == 0.5
    assert report["rules"]["likes_rule"]["p_value"] == 1.0  # a constant never beats a shuffle
    assert report["apex_compare"]["auc"]["overall"] == 0.5
    assert report["apex_compare"]["accuracy"] == 0.5  # every 0.5 counts half
    assert all(r["n"] == 0 and r["sign"] == "unclear" for r in report["orientation"].values())
    # Fitted models only differ between folds by solver noise in the intercept.
    for model, row in report["schemes"]["paper"]["models"].items():
        assert abs(row["auc"]["overall"] - 0.5) < 0.06, model
    assert report["schemes"]["paper"]["models"]["svm"]["p_value"] is None


def test_the_papers_svm_grid_runs_nested_in_the_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    from apex.evaluation import arena as arena_eval

    assert set(arena_eval.SVM_GRID) == {f"svc__estimator__{k}" for k in ("C", "kernel", "gamma")}
    # the paper's grid with one value per axis keeps the test fast
    grid = {**arena_eval.SVM_GRID, "svc__estimator__C": [1.0], "svc__estimator__gamma": ["scale"]}
    monkeypatch.setattr(arena_eval, "SVM_GRID", grid)
    battles, q = _battles(n_clips=40, n=90)
    report = evaluate_arena(
        battles, _predictions(q), folds=3, svm="grid", schemes=("paper",), **FAST
    )
    assert report["schemes"]["paper"]["models"]["svm"]["auc"]["overall"] > 0.9
    assert report["settings"]["svm"] == "grid"


def test_logistic_regression_matches_the_training_modules_protocol() -> None:
    """Same battles, same features ("all"), same seed: the same overall AUC as
    :func:`apex.evaluation.metrics.arena_protocol`."""
    from apex.evaluation.metrics import arena_protocol
    from apex.training.battles import Battles

    battles, q = _battles(seed=1)
    noisy = q + np.random.default_rng(5).normal(0, 1.0, len(q))
    preds = _predictions(noisy)
    ours = evaluate_arena(battles, preds, feature_set="all", svm="off", schemes=("paper",), **FAST)
    idx = lambda col: battles[col].str[1:].astype(int).to_numpy()  # noqa: E731
    y = battles["preference"].map({"A": 1.0, "B": 0.0}).to_numpy(np.float32)
    decisive = ~np.isnan(y)
    theirs = arena_protocol(
        {n: preds[n].to_numpy() for n in SCORE_NAMES},
        Battles(
            idx("clip_a")[decisive],
            idx("clip_b")[decisive],
            y[decisive],
            np.zeros(decisive.sum()),
            battles["is_instrumental"].to_numpy()[decisive],
        ),
    )
    assert 0.6 < theirs["auc"] < 0.99
    assert _lr(ours)["auc"]["overall"] == pytest.approx(theirs["auc"])
    lo, hi = _lr(ours)["auc_ci"]["overall"]
    assert lo < theirs["auc"] < hi and hi - lo < 0.2


def test_unscored_clips_and_small_sets_are_reported_not_fatal() -> None:
    battles, q = _battles(n=60)
    preds = _predictions(q).drop(index=["c0", "c1", "c2"])
    report = evaluate_arena(battles.head(40), preds, svm="off", folds=10, **FAST)
    lost = battles.head(40)[["clip_a", "clip_b"]].isin(["c0", "c1", "c2"]).any(axis=1).sum()
    assert report["counts"]["unscored"] == lost
    assert report["counts"]["excluded"]["no prediction for a clip"] == lost
    assert report["counts"]["boards"]["overall"]["unscored"] == lost
    for scheme in arena_cv.FOLD_SCHEMES:  # < 10 of an outcome (or of groups)
        assert "skipped" in report["schemes"][scheme], scheme
    assert "skipped" in format_report(report)
    full, q = _battles()
    bare = full.drop(columns=["prompt", "system_a", "system_b"])
    report = evaluate_arena(bare, _predictions(q), svm="off", **FAST)
    assert "models" in report["schemes"]["paper"]
    assert "lack the prompt" in report["schemes"]["prompt"]["skipped"]


def test_bad_inputs_raise_clear_errors() -> None:
    battles, q = _battles()
    with pytest.raises(ArenaEvalError, match="lack columns"):
        evaluate_arena(battles.drop(columns=["preference"]), _predictions(q))
    with pytest.raises(ArenaEvalError, match="none of"):
        evaluate_arena(battles, pd.DataFrame({"x": q}))
    with pytest.raises(ArenaEvalError, match="svm must be"):
        evaluate_arena(battles, _predictions(q), svm="maybe")
    with pytest.raises(ArenaEvalError, match="unknown fold schemes"):
        evaluate_arena(battles, _predictions(q), schemes=("paper", "by-date"))


def test_features_are_antisymmetric_in_the_differences() -> None:
    preds = _predictions(np.array([1.0, 4.0]))
    scores = {n: preds[n].to_numpy() for n in preds.columns}
    x, names = arena_cv.battle_features(scores, [0], [1], np.array([True]))
    y, _ = arena_cv.battle_features(scores, [1], [0], np.array([True]))
    diff = [i for i, n in enumerate(names) if n.startswith("diff_")]
    assert np.allclose(x[0, diff], -y[0, diff]) and "diff_combined_popularity" in names


class _QualityScorer:
    """Stands in for a Scorer: every score is the clip's latent demo quality (the known answer)."""

    def __init__(self, quality: dict[str, float]) -> None:
        self.quality = quality

    def score(self, path):
        from apex.scorer import ScoreResult

        q = self.quality[Path(path).stem]
        return [ScoreResult(scores={n: q * 20 if n in ENGAGEMENT else q for n in SCORE_NAMES})]

    def compare(self, a, b) -> float:
        return float(1 / (1 + np.exp(-(a.scores["coherence"] - b.scores["coherence"]))))

    def info(self) -> dict:
        return {"model_id": "quality-oracle", "is_demo": False}


def test_cli_on_the_demo_export(
    small_demo_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from apex.demo import load_metadata, simulate_votes
    from apex.sources.music_arena import export_votes

    meta = load_metadata(small_demo_corpus)
    data = export_votes(
        small_demo_corpus, simulate_votes(meta, 300, seed=2), tmp_path / "ma", audio_format="copy"
    )
    oracle = _QualityScorer(dict(zip(meta["clip_id"], meta["quality"], strict=True)))
    monkeypatch.setattr("apex.loader.load_scorer", lambda *a, **k: oracle)
    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    from apex.cli import main

    out = tmp_path / "report.json"
    argv = ["eval", "arena", "--data", str(data), "--svm", "off", "--bootstrap", "50"]
    argv += ["--permutations", "20", "--schemes", "paper,pair", "--model", "m1", "--model", "m2"]
    assert main([*argv, "--out", str(out)]) == 0
    full = json.loads(out.read_text())
    assert [r["model"]["spec"] for r in full["runs"]] == ["m1", "m2"]  # one report per model
    report = full["runs"][0]
    assert report["apex_compare"]["auc"]["overall"] > 0.7  # votes follow the latent quality
    assert report["apex_compare"]["p_value"] < 0.1  # 20 permutations: the smallest is 1/21
    assert report["counts"]["battles"] == 300 and report["unscored_clips"] == []
    assert list(report["schemes"]) == ["paper", "pair"]
    assert report["orientation"]["coherence"]["sign"] == "agrees"
    printed = capsys.readouterr().out
    assert "0.600" in printed and "[pair] grouped by unordered system pair" in printed
    assert "Orientation, before any fitting" in printed

    assert main([*argv[:-4], "--json"]) == 0
    printed = capsys.readouterr().out
    assert "NaN" not in printed  # strict JSON: an undefined figure is null
    assert json.loads(printed)["runs"][0]["settings"]["permutations"] == 20

    assert main(["eval", "arena", "--data", "music-arena"]) == 2
    assert "could not download" in capsys.readouterr().err
    assert main([*argv, "--schemes", "paper,bogus"]) == 2
    assert "unknown fold schemes" in capsys.readouterr().err
    assert main([*argv, "--permutations", "-1"]) == 2
    assert "--permutations" in capsys.readouterr().err

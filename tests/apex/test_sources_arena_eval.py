"""The paper's arena protocol on battles with a known answer; ``apex eval arena`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apex.sources.arena_eval import ArenaEvalError, evaluate_arena, features, format_report
from apex.tasks import ENGAGEMENT, SCORE_NAMES


def _battles(n_clips: int = 120, n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Battles decided by a latent quality ``q`` (A wins iff q_a > q_b), plus ties and both-bad."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(1, 5, n_clips)
    a = rng.integers(n_clips, size=n)
    b = (a + 1 + rng.integers(n_clips - 1, size=n)) % n_clips
    pref = np.where(q[a] > q[b], "A", "B").astype(object)
    pref[:20], pref[20:30] = "TIE", "BOTH_BAD"
    frame = pd.DataFrame(
        {
            "clip_a": [f"c{i}" for i in a],
            "clip_b": [f"c{i}" for i in b],
            "preference": pref,
            "is_instrumental": rng.random(n) < 0.5,
        }
    )
    return frame, q


def _predictions(values: np.ndarray) -> pd.DataFrame:
    index = [f"c{i}" for i in range(len(values))]
    cols = {n: values * 20 if n in ENGAGEMENT else values for n in SCORE_NAMES}
    return pd.DataFrame(cols, index=index)


def _p(q: np.ndarray, battles: pd.DataFrame) -> np.ndarray:
    qa = q[battles["clip_a"].str[1:].astype(int)]
    qb = q[battles["clip_b"].str[1:].astype(int)]
    return 1 / (1 + np.exp(-(qa - qb)))


def test_a_perfect_predictor_scores_auc_one() -> None:
    battles, q = _battles()
    report = evaluate_arena(battles, _predictions(q), p_compare=_p(q, battles), svm="fixed")
    for model in ("logistic_regression", "svm", "likes_rule"):
        for group in ("overall", "instrumental", "vocal"):
            assert report["models"][model]["auc"][group] > 0.99, (model, group)
    assert report["apex_compare"]["auc"]["overall"] == 1.0
    assert report["apex_compare"]["accuracy"] == 1.0
    counts = report["counts"]
    assert (counts["TIE"], counts["BOTH_BAD"], counts["used"]) == (20, 10, 370)
    assert counts["excluded"] == {"TIE": 20, "BOTH_BAD": 10, "no prediction for a clip": 0}


def test_a_constant_predictor_scores_auc_one_half() -> None:
    battles, _ = _battles()
    battles["is_instrumental"] = True  # no information at all in any feature
    constant = np.full(120, 3.0)
    report = evaluate_arena(
        battles, _predictions(constant), p_compare=np.full(400, 0.5), svm="fixed"
    )
    assert report["models"]["likes_rule"]["auc"]["overall"] == 0.5
    assert report["apex_compare"]["auc"]["overall"] == 0.5
    assert report["apex_compare"]["accuracy"] == 0.5  # every 0.5 counts half
    # Fitted models only differ between folds by solver noise in the intercept.
    for model in ("logistic_regression", "svm"):
        assert abs(report["models"][model]["auc"]["overall"] - 0.5) < 0.06, model


def test_the_papers_svm_grid_runs_nested_in_the_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    from apex.sources import arena_eval

    assert set(arena_eval.SVM_GRID) == {f"svc__estimator__{k}" for k in ("C", "kernel", "gamma")}
    monkeypatch.setitem(arena_eval.SVM_GRID, "svc__estimator__C", [1.0])  # keep the test fast
    monkeypatch.setitem(arena_eval.SVM_GRID, "svc__estimator__gamma", ["scale"])
    battles, q = _battles(n_clips=40, n=90)
    report = evaluate_arena(battles, _predictions(q), folds=3, svm="grid")
    assert report["models"]["svm"]["auc"]["overall"] > 0.9
    assert report["settings"]["svm"] == "grid"


def test_logistic_regression_matches_the_training_modules_protocol() -> None:
    """Same battles, same features ("all"), same seed: the same overall AUC as
    :func:`apex.training.evaluate.arena_protocol`."""
    from apex.training.data import Battles
    from apex.training.evaluate import arena_protocol

    battles, q = _battles(seed=1)
    noisy = q + np.random.default_rng(5).normal(0, 1.0, len(q))
    preds = _predictions(noisy)
    ours = evaluate_arena(battles, preds, feature_set="all", svm="off")
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
    assert ours["models"]["logistic_regression"]["auc"]["overall"] == pytest.approx(theirs["auc"])


def test_unscored_clips_and_small_sets_are_reported_not_fatal() -> None:
    battles, q = _battles(n=60)
    preds = _predictions(q).drop(index=["c0", "c1", "c2"])
    report = evaluate_arena(battles.head(40), preds, svm="off", folds=10)
    lost = battles.head(40)[["clip_a", "clip_b"]].isin(["c0", "c1", "c2"]).any(axis=1).sum()
    assert report["counts"]["unscored"] == lost
    assert report["counts"]["excluded"]["no prediction for a clip"] == lost
    assert "skipped" in report["models"]["logistic_regression"]  # < 10 of an outcome
    assert "skipped" in format_report(report)


def test_bad_inputs_raise_clear_errors() -> None:
    battles, q = _battles()
    with pytest.raises(ArenaEvalError, match="lack columns"):
        evaluate_arena(battles.drop(columns=["preference"]), _predictions(q))
    with pytest.raises(ArenaEvalError, match="none of"):
        evaluate_arena(battles, pd.DataFrame({"x": q}))
    with pytest.raises(ArenaEvalError, match="svm must be"):
        evaluate_arena(battles, _predictions(q), svm="maybe")


def test_features_are_antisymmetric_in_the_differences() -> None:
    preds = _predictions(np.array([1.0, 4.0]))
    x, names = features(preds, ["c0"], ["c1"], np.array([True]))
    y, _ = features(preds, ["c1"], ["c0"], np.array([True]))
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
    monkeypatch.setattr("apex.scorer.load_scorer", lambda *a, **k: oracle)
    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    from apex.cli import main

    out = tmp_path / "report.json"
    assert main(["eval", "arena", "--data", str(data), "--svm", "off", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["apex_compare"]["auc"]["overall"] > 0.7  # votes follow the latent quality
    assert report["counts"]["battles"] == 300 and report["unscored_clips"] == []
    assert "0.600" in capsys.readouterr().out

    assert main(["eval", "arena", "--data", "music-arena"]) == 1
    assert "could not download" in capsys.readouterr().err

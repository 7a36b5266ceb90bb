"""About tab (:mod:`webui.about`): which model and encoder answer, their revisions, why the demo
answers, the gate's figures, the metrics, the services' status, and what a restart would lose (a
Space without the Hub repos or a token says so)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from apex.scorer import DEMO_NOTICE
from apex.settings import Settings
from apex.training.registry import record_commit, registry_for
from webui import about
from webui.about import config_warnings, state_line
from webui.services import Services


@pytest.fixture
def store_only(settings) -> Services:
    """Services holding only a stand-in vote store (the card reads nothing else from them)."""
    return Services(settings, builders={"store": lambda s, b: "STORE"}).start(background=False)


def _demo_info(**extra: Any) -> dict[str, Any]:
    """``Scorer.info()`` of the offline demo model, with ``extra`` fields."""
    base = {"model_id": "apex-arena-demo", "kind": "demo", "encoder_id": "fallback"}
    return {**base, "is_demo": True, **extra}


def test_demo_card_shows_the_exact_reason(store_only) -> None:
    reason = (
        "The published APEX model is not available here, so the offline demo model answers. "
        "Reason: published APEX heads amaai-lab/apex (revision abc, files config.json, "
        "pytorch_model.bin): amaai-lab/apex (pytorch_model.bin) does not match ReferenceHeads: "
        "missing keys: branch_clarity.branch.2.weight"
    )
    info = _demo_info(version="1", encoder_is_fallback=True, notices=[reason])
    card = about.model_card_markdown(info, store_only)
    assert f"- **Why the demo answers:** {reason}" in card
    assert "`fallback` (built-in fallback, not MERT)" in card
    assert "revision `" not in card.split("**Why the demo answers:**")[0]


def test_published_card_shows_revisions_and_where_from(store_only) -> None:
    info = {
        "model_id": "amaai-lab/apex",
        "version": "epoch-50",
        "kind": "published",
        "revision": "r1",
        "files": ["config.json", "model.safetensors"],
        "from_cache": False,
        "heads_from": "amaai-lab/apex",
        "encoder_id": "m-a-p/MERT-v1-95M",
        "encoder_revision": "r2",
        "notices": [],
    }
    card = about.model_card_markdown(info, store_only)
    assert "published, revision `r1`, files `config.json`, `model.safetensors`)" in card
    assert "`amaai-lab/apex` (downloaded from the Hub)" in card
    assert "`m-a-p/MERT-v1-95M`, revision `r2`" in card and "**Why the demo answers:**" not in card
    assert DEMO_NOTICE not in card


def test_model_card_lists_model_metrics_and_services(store_only) -> None:
    info = _demo_info(
        version="7",
        metrics={"preference_accuracy": 0.75, "spearman": {"clarity": 0.5}},
        software={"gradio": "6"},
    )
    card = about.model_card_markdown(info, store_only)
    assert "`apex-arena-demo` (version `7`" in card and DEMO_NOTICE in card
    assert "- `preference_accuracy`: 0.750" in card and "    - `clarity`: 0.500" in card
    assert "vote store: ready" in card
    # refits are on by default: daily or after 500 new votes
    assert "A refit runs every 24 h when there are new votes, or after 500 new votes" in card
    warming = about.model_card_markdown({"warming_up": "still loading"}, store_only)
    assert "still loading" in warming


def test_model_card_shows_both_models_figures_and_pinning(settings) -> None:
    from apex.training.registry import registry_for

    registry = registry_for(settings)
    version = registry.new_version()
    gate = {
        "promote": True,
        "reasons": ["ok"],
        "serving_version": "3-demo",
        "challenger": {"accuracy": 0.81, "spearman": 0.6, "aesthetics": 0.7, "battles": 40},
        "serving": {"accuracy": 0.74, "spearman": 0.58, "aesthetics": 0.71, "battles": 40},
    }
    (version / "metrics.json").write_text(json.dumps({"gate": gate}))
    pinned = settings.replace(model="demo", refit_hours=1.0)
    services = Services(pinned, builders={"store": lambda s, b: "STORE"}).start(background=False)
    info = {"model_id": "apex-arena-refit", "version": version.name, "kind": "demo"}
    card = about.model_card_markdown(info, services)
    assert f"`{version.name}` was promoted against `3-demo`" in card
    assert "| held-out pairwise accuracy | 0.810 | 0.740 |" in card
    assert "| aesthetics Spearman | 0.700 | 0.710 |" in card
    assert "The model is pinned" in card and "APEX_MODEL=demo" in card


def test_refit_section_says_when_next_and_what_the_last_decided(settings) -> None:
    from types import SimpleNamespace

    from annotation.refit_worker import RefitWorker

    off = Services(settings.replace(refit_hours=0.0), builders={}).start(background=False)
    assert about.refit_lines(off) == ["Refits are off on this deployment (`APEX_REFIT_HOURS=0`)."]
    store = SimpleNamespace(counts=lambda: {"votes": 120})
    now = [0.0]
    worker = RefitWorker(settings, None, store, clock=lambda: now[0])
    services = Services(settings, builders={"refit": lambda s, b: worker}).start(False)
    now[0] = 3600.0 * 1.5
    store.counts = lambda: {"votes": 220}
    text = "\n".join(about.refit_lines(services))
    assert "Next refit: in 22.5 h (schedule, if new votes arrived by then) or after 400 " in text
    assert "(100 new so far)" in text and "No refit has run since the app started." in text
    decision = SimpleNamespace(
        promote=False,
        reasons=["held-out pairwise accuracy 0.600 is worse than the serving model's 0.700"],
        challenger={"accuracy": 0.6, "battles": 40},
        champion={"accuracy": 0.7, "battles": 40},
    )
    outcome = SimpleNamespace(version=settings.data_dir / "v0007", decision=decision, note="")
    worker._refit = lambda s, st: outcome
    worker.run_once("votes")
    text = "\n".join(about.refit_lines(services))
    assert "Last refit (run by enough new votes): version `v0007` was not promoted" in text
    assert "| held-out pairwise accuracy | 0.600 | 0.700 |" in text


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """On a Space (SPACE_ID set), with no token anywhere (HF_TOKEN unset, no stored login)."""
    monkeypatch.setenv("SPACE_ID", "someone/apex-arena")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))


def _champion(settings: Settings) -> Path:
    registry = registry_for(settings)
    version = registry.new_version()
    (version / "metadata.json").write_text(json.dumps({"version": version.name}))
    registry.promote(version)
    return version


def test_a_space_without_repos_says_votes_and_models_are_lost(space, tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "d")
    warnings = config_warnings(settings)
    assert any(w.startswith("APEX_VOTES_REPO is not set: every vote is lost") for w in warnings)
    assert any(
        w.startswith("APEX_MODEL_REPO is not set: a promoted model is lost") for w in warnings
    )
    version = _champion(settings)
    line = state_line(settings, 42, None)
    assert line.startswith(
        f"A restart now would lose all 42 votes, the promoted model `{version.name}`"
    )
    assert "caches are rebuilt at start" in line


def test_repos_without_a_token_are_no_better(space, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {}, data_dir=tmp_path / "d", votes_repo="o/votes", model_repo="o/models"
    )
    warnings = config_warnings(settings)
    assert [w.split(":")[0] for w in warnings] == ["HF_TOKEN is not set"] * 2
    assert "o/votes" in warnings[0] and "o/models" in warnings[1]
    assert state_line(settings, 7, None).startswith("A restart now would lose all 7 votes")


def test_with_repos_and_a_token_only_a_crash_loses_the_pending_votes(
    space, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    settings = Settings.from_env(
        {},
        data_dir=tmp_path / "d",
        votes_repo="o/votes",
        model_repo="o/models",
        cache_root=tmp_path / "bucket",
    )
    assert config_warnings(settings) == []
    version = _champion(settings)
    line = state_line(settings, 100, SimpleNamespace(pending_votes=12))
    assert line.startswith(f"A restart now would lose the promoted model `{version.name}`")
    record_commit(version, "o/models", "c" * 40, "pushed")  # the champion is on the Hub now
    line = state_line(settings, 100, SimpleNamespace(pending_votes=12))
    assert line == (
        "A restart now would lose nothing; 12 votes not yet on the Hub are pushed by a graceful "
        f"restart and lost only in a crash; caches stay in `{tmp_path / 'bucket'}`."
    )


def test_self_hosted_loses_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPACE_ID", raising=False)
    settings = Settings.from_env({}, data_dir=tmp_path / "d")
    assert config_warnings(settings) == []
    assert state_line(settings, 5, None).startswith("Self-hosted: a restart loses nothing")

"""UI handlers and the composition root, without a browser and without a scorer.

Only the vote store is real here (SQLite in a temp dir); the scorer-bound paths are covered end to
end in ``test_e2e_client.py``. These run in about a second.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES
from webui import arena, charts, data, leaderboard, score
from webui.services import NotReady, Services


# ---------------------------------------------------------------------- services
def test_services_report_warming_then_ready(settings) -> None:
    gate = threading.Event()
    services = Services(
        settings,
        builders={"store": lambda s, b: "STORE", "scorer": lambda s, b: gate.wait(5) and "SCORER"},
    ).start()
    with pytest.raises(NotReady, match="warming up"):
        services.get("scorer")
    assert "APEX scorer warming up" in services.status_line()
    gate.set()
    assert services.wait(5)
    assert services.scorer == "SCORER" and services.status_line() == ""


def test_failed_service_fails_its_dependants_with_the_reason(settings) -> None:
    def broken(s, b):
        raise OSError("disk full")

    services = Services(
        settings,
        builders={
            "pool": lambda s, b: "POOL",
            "arena": lambda s, b: "ARENA",
            "scorer": broken,
            "scoring": lambda s, b: "SCORING",
        },
    ).start(background=False)
    assert not services.wait(1)
    with pytest.raises(NotReady, match="disk full"):
        services.get("scorer")
    with pytest.raises(NotReady, match="could not start: needs the APEX scorer"):
        services.get("scoring")
    with pytest.raises(NotReady, match="disk full"):  # a waiting caller is told at once
        services.wait_for("scorer", timeout=60.0)
    # The arena opens without the model: battles and votes do not need it.
    assert services.arena == "ARENA" and services.get("pool") == "POOL"


def test_optional_service_failure_keeps_the_app_up(settings) -> None:
    def broken(s, b):
        raise RuntimeError("hub down")

    services = Services(settings, builders={"store": lambda s, b: "STORE", "sync": broken}).start(
        background=False
    )
    assert services.wait(1)
    assert services.store == "STORE"
    assert services.status_line() == ""


# ---------------------------------------------------------------------- score tab
def _result(is_demo: bool = True) -> dict:
    scores = {n: 50.0 if n in ENGAGEMENT else 3.0 for n in SCORE_NAMES}
    segments = [{"start_s": 30.0 * i, "end_s": 30.0 * (i + 1), **scores} for i in range(3)]
    return {
        "scores": scores,
        "uncertainty": {},
        "percentiles": {"score_streams": 71.0, "score_likes": 12.0},
        "segments": segments,
        "duration_s": 90.0,
        "model_id": "demo",
        "encoder_id": "fallback",
        "is_demo": is_demo,
        "warnings": ["the song is silent"],
        "source": "/tmp/x/song.wav",
    }


def test_scores_table_has_seven_rows_with_meanings() -> None:
    table = score.scores_table(_result())
    assert len(table) == 7
    assert table.loc[0, "percentile"] == "71st" and table.loc[6, "percentile"] == ""
    assert table["what it means"].str.len().min() > 20


def test_banner_shows_demo_and_warnings_only_when_due() -> None:
    assert "Offline demo model answering" in score.banner_markdown(_result(is_demo=True))
    assert [score.ordinal(v) for v in (1, 2, 3, 11, 12, 22, 99.6)] == [
        "1st",
        "2nd",
        "3rd",
        "11th",
        "12th",
        "22nd",
        "100th",
    ]
    assert "silent" in score.banner_markdown(_result(is_demo=True))
    quiet = {**_result(is_demo=False), "warnings": []}
    assert score.banner_markdown(quiet) == ""


def test_render_result_gives_figures_and_a_json_file() -> None:
    banner, table, radar, text, timeline, download = score.render_result(_result())
    assert banner["visible"] is True and len(table) == 7
    assert len(radar.data) == 1 and len(radar.data[0].r) == len(AESTHETICS) + 1  # closed
    assert len(timeline.data) == len(SCORE_NAMES)
    assert "higher than 71%" in text
    assert Path(download["value"]).read_text().startswith("{")


def test_score_without_file_or_scorer_says_what_to_do(settings) -> None:
    services = Services(settings, builders={"scorer": lambda s, b: None})
    with pytest.raises(gr.Error, match="Upload a song"):
        score.score_song(services, None)
    with pytest.raises(gr.Error, match="warming up"):
        score.score_song(services, "/nonexistent.wav")


def test_forget_upload_deletes_only_uploads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    upload = tmp_path / "uploads" / "abc" / "song.wav"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    mine = tmp_path / "mine.wav"
    mine.write_bytes(b"x")
    score.forget_upload(str(upload))
    score.forget_upload(str(mine))
    assert not upload.exists() and not upload.parent.exists()
    assert mine.exists()


# ---------------------------------------------------------------------- arena tab
def test_served_names_cannot_be_computed_from_the_pool(tmp_path: Path, settings) -> None:
    import hashlib

    clip = tmp_path / "pool" / "suno_v4_0001.flac"
    clip.parent.mkdir()
    clip.write_bytes(b"fLaC-bytes")
    folder = arena.served_folder(settings)
    first = Path(arena.served_copy(clip, folder))
    again = Path(arena.served_copy(clip, folder))  # the same clip in a later battle
    assert first != again and first.name != again.name
    assert first.read_bytes() == again.read_bytes() == b"fLaC-bytes" and first.suffix == ".flac"
    # Nothing anyone could compute from the pool: no file name, no hash of the path or content.
    guesses = {str(clip), str(clip.resolve()), clip.name, "fLaC-bytes"}
    hashes = {hashlib.sha256(g.encode()).hexdigest() for g in guesses}
    for served in (first, again):
        assert "suno" not in str(served)
        assert not any(h[:8] in str(served) for h in hashes)
        # The link lives outside the data directory, so its URL shows nothing of the layout.
        assert not served.is_relative_to(settings.data_dir) and served.is_relative_to(folder)
    shutil.rmtree(folder)


def test_served_links_are_removed_once_their_battles_expired(tmp_path: Path, settings) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF")
    folder = tmp_path / "served"
    stale = folder / "12"  # a bucket from long ago
    stale.mkdir(parents=True)
    (stale / "old.wav").write_bytes(b"x")
    fresh = Path(arena.served_copy(clip, folder, keep_s=3600))
    assert not stale.exists() and fresh.exists()
    assert clip.exists()  # the pool's file is never touched


def test_listening_bookkeeping_adds_only_playing_time() -> None:
    state = arena.fresh_listen_state("b1")
    state["since"]["A"] = 10.0
    assert arena.advance(state, 12.5) == ["A"]
    state["since"].pop("A")
    assert arena.advance(state, 20.0) == []
    assert state["total"] == {"A": 2.5, "B": 0.0}


def test_progress_and_ratings_helpers() -> None:
    text = arena.progress_markdown({"A": 7.0, "B": 1.2}, 5.0)
    assert "A 5 / 5 s (done)" in text and "B 1 / 5 s" in text
    values = [None] * 10
    values[0], values[9] = "4", "2"
    assert arena.collect_ratings(values) == {"A": {"coherence": 4}, "B": {"naturalness": 2}}
    assert arena.collect_ratings([None] * 10) is None


@pytest.mark.parametrize(
    ("pref", "agrees", "expected"),
    [("A", True, "agreed"), ("B", False, "disagreed"), ("TIE", None, "not counted")],
)
def test_reveal_text(pref: str, agrees: bool | None, expected: str) -> None:
    scores = {n: 3.0 for n in SCORE_NAMES}
    reveal = {
        "preference": pref,
        "system_a": "sys-one",
        "system_b": "sys-two",
        "apex_a": scores,
        "apex_b": scores,
        "apex_pick": "A",
        "apex_probability": 0.8,
        "apex_agrees": agrees,
    }
    text = arena.reveal_markdown(reveal)
    assert "sys-one" in text and "sys-two" in text and expected in text
    assert text.count("| APEX") == len(SCORE_NAMES)


# ---------------------------------------------------------------------- leaderboard + data
def _vote(i: int, a: str, b: str, pref: str, instrumental: bool, p_a: float | None):
    from annotation.store import VoteRecord

    return VoteRecord(
        vote_id=f"v{i}",
        battle_uuid=f"b{i}",
        timestamp=time.time() - 100 + i,
        user_pseudonym="u",
        session_pseudonym="s",
        prompt="p",
        is_instrumental=instrumental,
        system_a=a,
        system_b=b,
        clip_a=f"{a}-{i}",
        clip_b=f"{b}-{i}",
        audio_a="a.wav",
        audio_b="b.wav",
        preference=pref,
        apex_p_a=p_a,
    )


@pytest.fixture
def store_services(settings):
    from annotation.store import open_store

    store = open_store(settings)
    # "good" beats "bad" 8 times out of 10 on instrumental prompts; vocal battles are all ties.
    for i in range(10):
        pref = "A" if i < 8 else "B"
        store.insert_vote(_vote(i, "good", "bad", pref, True, 0.7))
    for i in range(10, 14):
        store.insert_vote(_vote(i, "good", "mid", "TIE", False, 0.6))
    services = Services(settings, builders={"store": lambda s, b: store}).start(background=False)
    yield services
    store.close()


def test_leaderboard_orders_systems_and_measures_agreement(store_services) -> None:
    board = leaderboard.leaderboard_data(store_services, "all")
    assert board["rows"][0]["system"] == "good"
    assert board["votes"] == 14 and board["rated_votes"] == 14
    assert board["agreement"]["n"] == 10 and board["agreement"]["agree"] == 8
    for row in board["rows"]:
        assert row["ci_low"] <= row["rating"] <= row["ci_high"]
    vocal = leaderboard.leaderboard_data(store_services, "vocal")
    assert {r["system"] for r in vocal["rows"]} == {"good", "mid"}
    table, chart, text, versions = leaderboard.render(board)
    assert list(table.columns) == ["rank", "system", "rating", "95% CI", "votes"]
    assert len(chart.data[0].y) == len(board["rows"])
    assert "80%" in text
    drawn = {trace.name for trace in versions.data}
    assert drawn == {row["version"] for row in board["agreement_by_version"]}


def test_data_export_round_trips(store_services) -> None:
    from annotation.export import VOTE_COLUMNS

    parquet, csv, rows = data.export_files(store_services)
    assert rows == 14
    frame = pd.read_parquet(parquet)
    assert list(frame.columns) == list(VOTE_COLUMNS) and len(frame) == 14
    assert len(pd.read_csv(csv)) == 14
    assert list(data.columns_frame()["column"]) == list(VOTE_COLUMNS)
    summary = data.summary_markdown(store_services, rows, {"message": "kept locally"})
    assert "14 votes" in summary and "APEX_VOTES_REPO" in summary


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_repeated_exports_leave_no_new_files(store_services, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(system_tmp))
    first = data.export_files(store_services)
    files = _files_under(tmp_path)
    for _ in range(5):
        assert data.export_files(store_services) == first  # the same cached files
    assert _files_under(tmp_path) == files and not _files_under(system_tmp)
    # A new vote rebuilds the export once and removes the old one.
    store_services.store.insert_vote(_vote(99, "good", "bad", "A", True, 0.7))
    parquet, _csv, rows = data.export_files(store_services)
    assert rows == 15 and len(pd.read_parquet(parquet)) == 15
    assert not Path(first[0]).exists() and len(_files_under(tmp_path)) == len(files)


def test_score_json_download_is_written_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    result = {"scores": {"coherence": 3.0}, "source": "song.wav"}
    path = score.save_json(result)
    assert all(score.save_json(result) == path for _ in range(5))
    assert json.loads(Path(path).read_text()) == result
    assert len(_files_under(tmp_path)) == 1 and Path(path).is_relative_to(tmp_path / "gradio")


def test_ratings_chart_draws_asymmetric_ci() -> None:
    board = pd.DataFrame(
        {
            "system": ["x", "y"],
            "rating": [1010.0, 990.0],
            "ci_low": [1000.0, 950.0],
            "ci_high": [1030.0, 995.0],
        }
    )
    fig = charts.ratings_chart(board)
    trace = fig.data[0]
    assert list(trace.y) == ["y", "x"]  # best on top
    assert list(trace.error_x.array) == [5.0, 20.0]
    assert list(trace.error_x.arrayminus) == [40.0, 10.0]


# ---------------------------------------------------------------------- app wiring
def test_ui_exposes_named_endpoints_with_limits(settings) -> None:
    from webui import build_ui

    services = Services(settings.replace(score_concurrency=2), builders={})
    demo = build_ui(services)
    named = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    assert {"score", "compare", "new_battle", "listen", "vote", "leaderboard"} <= set(named)
    assert named["score"].concurrency_limit == 2
    assert named["vote"].concurrency_limit > named["score"].concurrency_limit
    assert named["vote"].concurrency_id == named["new_battle"].concurrency_id


# ---------------------------------------------------------------------- about tab
def test_model_card_lists_model_metrics_and_services(settings) -> None:
    from webui import about

    services = Services(settings, builders={"store": lambda s, b: "STORE"}).start(background=False)
    info = {
        "model_id": "apex-arena-demo",
        "version": "7",
        "kind": "demo",
        "encoder_id": "fallback",
        "is_demo": True,
        "metrics": {"preference_accuracy": 0.75, "spearman": {"clarity": 0.5}},
        "software": {"gradio": "6"},
    }
    card = about.model_card_markdown(info, services)
    assert "`apex-arena-demo` (version `7`" in card and "Offline demo model" in card
    assert "- `preference_accuracy`: 0.750" in card and "    - `clarity`: 0.500" in card
    assert "vote store: ready" in card and "refits are off" in card
    warming = about.model_card_markdown({"warming_up": "still loading"}, services)
    assert "still loading" in warming


def test_model_card_shows_both_models_figures_and_pinning(settings) -> None:
    import json

    from apex.training.registry import registry_for
    from webui import about

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


def test_imported_votes_count_only_when_asked(store_services) -> None:
    store = store_services.store
    for i in range(20, 26):  # an imported board where "bad" always wins
        vote = _vote(i, "bad", "good", "A", True, None)
        store.import_votes([(None, dataclasses.replace(vote, source="imported"))])
    ours = leaderboard.leaderboard_data(store_services, "all")
    both = leaderboard.leaderboard_data(store_services, "all", include_imported=True)
    assert ours["rated_votes"] == 14 and both["rated_votes"] == 20
    ratings = {
        name: {r["system"]: r["rating"] for r in b["rows"]}
        for name, b in [("ours", ours), ("both", both)]
    }
    gap = {k: v["good"] - v["bad"] for k, v in ratings.items()}
    assert gap["both"] < gap["ours"], "imported votes change the board only when included"

"""Score tab (:mod:`webui.score`): tables, banner, figures, uploads forgotten, JSON download."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from apex.scorer import DEMO_NOTICE
from apex.tasks import AESTHETICS, ENGAGEMENT, SCORE_NAMES
from tests.webui.conftest import files_under
from webui import score
from webui.services import Services
from webui.uploads import UploadLeases


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
        "name": "/tmp/x/song.wav",
    }


def test_scores_table_has_seven_rows_with_meanings() -> None:
    table = score.scores_table(_result())
    assert len(table) == 7
    assert table.loc[0, "percentile"] == "71st" and table.loc[6, "percentile"] == ""
    assert table["what it means"].str.len().min() > 20


def test_banner_shows_demo_and_warnings_only_when_due() -> None:
    banner = score.banner_markdown(_result(is_demo=True))
    assert banner.startswith(f"**{DEMO_NOTICE}**")
    # The notice is also among a demo result's warnings: shown once, not twice.
    repeated = {**_result(is_demo=True), "warnings": [DEMO_NOTICE, "the song is silent"]}
    assert score.banner_markdown(repeated).count(DEMO_NOTICE) == 1
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
    # Never started: the scorer stays warming up, and the handler waits APEX_WARMUP_WAIT_S.
    services = Services(settings.replace(warmup_wait_s=0.2), builders={"scorer": lambda s, b: None})
    with pytest.raises(gr.Error, match="Upload a song"):
        score.score_song(services, None)
    with pytest.raises(gr.Error, match="warming up"):
        score.score_song(services, "/nonexistent.wav")


def test_releasing_deletes_only_uploads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    upload = tmp_path / "uploads" / "abc" / "song.wav"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    mine = tmp_path / "mine.wav"
    mine.write_bytes(b"x")
    leases = UploadLeases()
    leases.release(str(upload))
    leases.release(str(mine))
    assert not upload.exists() and not upload.parent.exists()
    assert mine.exists()


def test_score_json_download_is_written_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    result = {"scores": {"coherence": 3.0}, "name": "song.wav"}
    path = score.save_json(result)
    assert all(score.save_json(result) == path for _ in range(5))
    assert json.loads(Path(path).read_text()) == result
    assert len(files_under(tmp_path)) == 1 and Path(path).is_relative_to(tmp_path / "gradio")


def _popularity_result(streams: float) -> dict:
    """What a ``popularity`` reference checkpoint's scorer returns: streams and likes only."""
    scores = {"score_streams": streams, "score_likes": 40.0}
    return {
        **_result(is_demo=False),
        "scores": scores,
        "percentiles": {},
        "segments": [{"start_s": 0.0, "end_s": 30.0, **scores}],
    }


def test_a_popularity_only_result_draws_its_two_scores() -> None:
    _, table, radar, text, timeline, _ = score.render_result(_popularity_result(61.0))
    assert list(table["score"]) == ["Streams", "Likes"]
    assert "Streams: 61.0 / 100" in text
    assert "no aesthetic scores" in radar.layout.annotations[0].text and not radar.data
    assert len(timeline.data) == 2  # the two engagement lines
    pair = {"a": _popularity_result(61.0), "b": _popularity_result(50.0), "p_prefer_a": 0.6}
    _, p_text, c_table, c_radar = score.render_compare(pair)
    assert list(c_table["score"]) == ["Streams", "Likes"] and "P(prefer A)" in p_text
    assert c_table.loc[0, "A - B"] == "+11.00" and not c_radar.data


def test_compare_headline_names_a_pick_only_when_the_shown_odds_differ() -> None:
    def headline(p_a: float) -> str:
        pair = {"a": _popularity_result(60.0), "b": _popularity_result(60.0), "p_prefer_a": p_a}
        return score.render_compare(pair)[1].splitlines()[0]

    assert headline(0.5) == "### APEX expects no preference between A and B"
    assert headline(0.502) == "### APEX expects no preference between A and B"  # shown 50% / 50%
    assert headline(0.6) == "### APEX expects listeners to prefer **A**"
    assert headline(0.4) == "### APEX expects listeners to prefer **B**"

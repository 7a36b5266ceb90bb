"""Leaderboard tab (:mod:`webui.leaderboard`) over a real SQLite vote store (``store_services``)."""

from __future__ import annotations

import dataclasses
import time
from unittest.mock import ANY

import gradio as gr
import pytest

from annotation.board import board_data
from webui import leaderboard
from webui.board_views import BoardViews


def test_leaderboard_orders_systems_and_measures_agreement(store_services) -> None:
    board = board_data(store_services.store, "all")
    assert board["rows"][0]["system"] == "good"
    assert board["votes"] == 14 and board["rated_votes"] == 14
    assert board["agreement"]["n"] == 10 and board["agreement"]["agree"] == 8
    for row in board["rows"]:
        assert row["ci_low"] <= row["rating"] <= row["ci_high"]
    vocal = board_data(store_services.store, "vocal")
    assert {r["system"] for r in vocal["rows"]} == {"good", "mid"}
    table, chart, text, versions = leaderboard.render(board)
    assert list(table.columns) == ["rank", "system", "rating", "95% CI", "votes"]
    assert len(chart.data[0].y) == len(board["rows"])
    assert "80%" in text
    drawn = {trace.name for trace in versions.data}
    assert drawn == {row["version"] for row in board["agreement_by_version"]}


def test_imported_votes_count_only_when_asked(store_services, make_vote) -> None:
    store = store_services.store
    for i in range(20, 26):  # an imported board where "bad" always wins
        vote = make_vote(i, "bad", "good", "A", True, None)
        store.import_votes([(None, dataclasses.replace(vote, source="imported"))])
    ours = board_data(store_services.store, "all")
    both = board_data(store_services.store, "all", include_imported=True)
    assert ours["rated_votes"] == 14 and both["rated_votes"] == 20
    ratings = {
        name: {r["system"]: r["rating"] for r in b["rows"]}
        for name, b in [("ours", ours), ("both", both)]
    }
    gap = {k: v["good"] - v["bad"] for k, v in ratings.items()}
    assert gap["both"] < gap["ours"], "imported votes change the board only when included"


def test_apex_informed_board_says_how_settled_it_is(store_services) -> None:
    plain = board_data(store_services.store, "all")
    informed = board_data(store_services.store, "all", apex_informed=True)
    assert informed["apex_informed"] and not plain["apex_informed"]
    assert {r["system"] for r in informed["rows"]} == {r["system"] for r in plain["rows"]}
    assert 0.0 <= informed["apex"]["weight"] <= 2.0 and informed["apex"]["prior_votes"] >= 0
    assert plain["top_flips"] == 1  # one tie good-mid turned into a win for mid
    assert informed["top_flips"] is None or informed["top_flips"] >= 1
    for board in (plain, informed):
        assert all(r["provisional"] for r in board["rows"])  # 14 votes: every system is young
        assert board["b_win_share"]["n"] == sum(
            1 for r in store_services.store.votes_frame()["preference"] if r in ("A", "B")
        )
        assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in board["rows"])
    table, _, text, _ = leaderboard.render(informed)
    assert table["rating"].str.match(r"~\d+ \(\d+ votes\)").all()  # provisional, with the count
    assert "APEX-informed" in text and "Top spot" in text and "Clip order" in text


def test_board_views_serve_the_last_fit_and_refresh_after_new_votes(
    store_services, make_vote
) -> None:
    views = BoardViews(store_services, duty=1.0)
    first = views.get("all")
    assert first == {**board_data(store_services.store, "all"), "updated_at": ANY}
    assert views.get("all", include_flagged=False) is first  # the same view: the same result
    for i in range(20, 60):
        store_services.store.insert_vote(make_vote(i, "bad", "good", "A", True, 0.4))
    deadline = time.monotonic() + 30
    while views.get("all")["rated_votes"] == first["rated_votes"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert views.get("all")["rows"][0]["system"] == "bad"  # refitted on the new votes
    with pytest.raises(gr.Error, match="Unknown board"):
        views.get("nope")

"""Leaderboard options (flagged votes, signed-in only, style control) and the Data tab's flags."""

from __future__ import annotations

import pytest

from annotation.board import board_data
from annotation.store import SQLiteVoteStore, VoteRecord
from apex.demo.listeners import loudness_biased_votes
from tests.annotation.test_style import LOUDNESS, STRENGTHS
from webui import data, leaderboard
from webui.services import Services


@pytest.fixture
def services(settings):
    votes = loudness_biased_votes(STRENGTHS, LOUDNESS, n_votes=1500, seed=3)
    store = SQLiteVoteStore(settings.store_path)
    rows = []
    for n, row in enumerate(votes.to_dict("records")):
        rows.append(
            VoteRecord(
                vote_id=f"v{n}", battle_uuid=f"b{n}", timestamp=1000.0 + n,
                user_pseudonym=f"u{n % 50}", session_pseudonym="s", prompt="p",
                is_instrumental=bool(row["is_instrumental"]), system_a=row["system_a"],
                system_b=row["system_b"], clip_a="a", clip_b="b", audio_a="a", audio_b="b",
                preference=row["preference"], source="live", loudness_a=row["loudness_a"],
                loudness_b=row["loudness_b"], loudness_matched=False,
                duration_a=row["duration_a"], duration_b=row["duration_b"],
                instrumental_a=bool(row["instrumental_a"]),
                instrumental_b=bool(row["instrumental_b"]), signed_in=n % 3 == 0,
                # A contrarian ring pushing s0: flagged, so left out by default.
                flags="contrarian" if n % 10 == 0 else "",
            )
        )  # fmt: skip
    for n in range(1500, 1800):
        rows.append(
            VoteRecord(
                vote_id=f"v{n}", battle_uuid=f"b{n}", timestamp=1000.0 + n,
                user_pseudonym="ring", session_pseudonym="s", prompt="p",
                is_instrumental=True, system_a="s0", system_b="s4", clip_a="a", clip_b="b",
                audio_a="a", audio_b="b", preference="A", source="live",
                flags="same_side_streak,burst",
            )
        )  # fmt: skip
    for record in rows:
        store.insert_vote(record)
    yield Services(settings, builders={"store": lambda s, b: store}).start(background=False)
    store.close()


def ratings(board: dict) -> dict[str, float]:
    return {r["system"]: r["rating"] for r in board["rows"]}


def test_flagged_votes_are_left_out_unless_included(services) -> None:
    plain = board_data(services.store)
    with_flagged = board_data(services.store, include_flagged=True)
    assert plain["flagged_left_out"] == 150 + 300 and with_flagged["flagged_left_out"] == 0
    assert with_flagged["votes"] == plain["votes"] == 1800  # nothing deleted
    gap = {
        k: b["s0"] - b["s4"] for k, b in (("ours", ratings(plain)), ("all", ratings(with_flagged)))
    }
    assert gap["all"] > gap["ours"] + 100  # the ring only moves the board when included
    assert "left out" in leaderboard.agreement_markdown(plain)


def test_signed_in_only_board(services) -> None:
    board = board_data(services.store, signed_in_only=True)
    assert board["rated_votes"] < board_data(services.store)["rated_votes"] / 2


def test_style_controlled_board_shows_the_effects(services) -> None:
    plain = board_data(services.store)
    styled = board_data(services.store, style_control=True)
    assert plain["effects"] is None and [e["covariate"] for e in styled["effects"]] == [
        "duration", "loudness", "vocals", "position",
    ]  # fmt: skip
    loud = next(e for e in styled["effects"] if e["covariate"] == "loudness")
    assert loud["ci_low"] > 0 and loud["win_rate_per_sd"] > 0.5  # the louder clip wins more
    assert [r["system"] for r in styled["rows"]] == ["s4", "s3", "s2", "s1", "s0"]
    assert ratings(plain)["s0"] > ratings(plain)["s4"]  # the plain board is fooled
    _, chart, text, _versions = leaderboard.render(styled)
    assert (
        "Style control" in text
        and "loudness" in text
        and "clip order" in text
        and "style-controlled" in str(chart.layout.title.text)
    )


def test_data_tab_says_how_many_are_flagged_and_why(services) -> None:
    text = data.flags_markdown(services.store.votes_frame())
    assert "450 of 1800 votes are flagged" in text
    assert "contrarian 150" in text and "same side streak 300" in text and "burst 300" in text
    columns = data.columns_frame().set_index("column")["meaning"]
    assert "-16 LUFS" in columns["loudness_matched"] and "BS.1770" in columns["loudness_a"]
    assert "flagged" in columns["flags"].lower()

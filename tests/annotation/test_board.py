"""The one vote selection, and the consensus board the contrarian flag reads."""

from __future__ import annotations

import pandas as pd
import pytest

from annotation.board import flagged, ranked, select_votes
from annotation.ratings import fit_bradley_terry
from tests.annotation.test_ratings import simulate


def _votes() -> pd.DataFrame:
    rows = [
        # source,     instrumental, signed_in, flags
        ("live", True, True, ""),
        ("live", True, False, "too_fast"),
        ("live", False, True, ""),
        ("simulated", False, False, "burst,too_fast"),
        ("imported", True, False, ""),
    ]
    return pd.DataFrame(
        [
            {"vote_id": f"v{i}", "source": s, "is_instrumental": inst, "signed_in": si, "flags": f}
            for i, (s, inst, si, f) in enumerate(rows)
        ]
    )


@pytest.mark.parametrize(
    ("options", "counted", "left_out"),
    [
        ({}, ["v0", "v2"], 2),
        ({"include_flagged": True}, ["v0", "v1", "v2", "v3"], 0),
        ({"board": "instrumental"}, ["v0"], 1),
        ({"board": "vocal", "include_flagged": True}, ["v2", "v3"], 0),
        ({"signed_in_only": True}, ["v0", "v2"], 0),
        ({"include_imported": True, "board": "instrumental"}, ["v0", "v4"], 1),
        ({"sources": ("imported",)}, ["v4"], 0),
    ],
)
def test_select_votes_by_source_board_sign_in_and_flags(options, counted, left_out) -> None:
    votes = select_votes(_votes(), **options)
    scope = select_votes(_votes(), **{**options, "include_flagged": True})
    assert list(votes["vote_id"]) == counted and len(scope) - len(votes) == left_out


def test_select_votes_refuses_unknown_boards_sources_and_missing_columns() -> None:
    with pytest.raises(ValueError, match="board must be one of"):
        select_votes(_votes(), board="jazz")
    with pytest.raises(ValueError, match="unknown vote sources"):
        select_votes(_votes(), sources=("music-arena",))
    with pytest.raises(ValueError, match="source column"):
        select_votes(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="is_instrumental"):
        select_votes(_votes().drop(columns="is_instrumental"), board="vocal")


def test_flagged_marks_votes_with_any_flag() -> None:
    votes = pd.DataFrame({"flags": ["", "too_fast", "too_fast,burst", None]})
    assert flagged(votes).tolist() == [False, True, True, False]
    assert not flagged(votes.drop(columns="flags")).any()  # older tables: none flagged


def test_boards_split_instrumental_and_vocal() -> None:
    instrumental = simulate({"x": 1.0, "y": -1.0}, 400, seed=4).assign(is_instrumental=True)
    vocal = simulate({"x": -1.0, "y": 1.0}, 400, seed=5).assign(is_instrumental=False)
    votes = pd.concat([instrumental, vocal], ignore_index=True).assign(source="live")

    def board(name: str) -> pd.DataFrame:
        return ranked(fit_bradley_terry(select_votes(votes, board=name), l2=1.0))

    inst, voc, everything = board("instrumental"), board("vocal"), board("all")
    assert inst.index[0] == "x" and voc.index[0] == "y"
    assert inst["rank"].tolist() == [1, 2]
    assert everything["votes"].tolist() == [800, 800]
    no_rows = votes.iloc[:0]
    assert fit_bradley_terry(select_votes(no_rows, board="vocal")).empty


def test_style_board_gives_no_flip_count_for_another_leader() -> None:
    """The flip count is the plain fit's: a style board led by another system gets None."""
    from annotation.board import board_data

    rows = []

    def add(a: str, b: str, preference: str, n: int, loud_a: float, loud_b: float) -> None:
        clip = {"duration_a": 10.0, "duration_b": 10.0, "instrumental_a": 1.0}
        clip |= {"instrumental_b": 1.0, "source": "live", "flags": ""}
        rows.extend(
            {"system_a": a, "system_b": b, "preference": preference, **clip}
            | {"loudness_a": loud_a, "loudness_b": loud_b}
            for _ in range(n)
        )

    add("y", "z", "A", 20, -8.0, -14.0)  # y-z: the louder clip always wins
    add("y", "z", "B", 20, -14.0, -8.0)
    add("x", "y", "A", 12, -8.0, -14.0)  # x wins 60% of its battles with y, always louder
    add("x", "y", "B", 8, -8.0, -14.0)
    add("x", "z", "A", 11, -11.0, -11.0)
    add("x", "z", "B", 9, -11.0, -11.0)
    add("y", "z", "A", 12, -11.0, -11.0)
    add("y", "z", "B", 8, -11.0, -11.0)
    votes = pd.DataFrame(rows)

    class Store:
        def votes_frame(self) -> pd.DataFrame:
            return votes

        def counts(self) -> dict[str, int]:
            return {"votes": len(votes)}

    plain, style = (board_data(Store(), style_control=on) for on in (False, True))
    assert plain["rows"][0]["system"] == "x" and plain["top_flips"] == 3
    assert style["rows"][0]["system"] == "y" and style["top_flips"] is None

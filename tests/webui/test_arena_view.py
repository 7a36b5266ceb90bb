"""What the Arena tab shows (:mod:`webui.arena_view`): listening bookkeeping, progress, reveal,
and the per-battle clip links (unguessable names, expiry)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from apex.tasks import SCORE_NAMES
from webui import arena_view


def test_listening_bookkeeping_adds_only_playing_time() -> None:
    state = arena_view.fresh_listen_state("b1")
    state["since"]["A"] = 10.0
    assert arena_view.advance(state, 12.5) == ["A"]
    state["since"].pop("A")
    assert arena_view.advance(state, 20.0) == []
    assert state["total"] == {"A": 2.5, "B": 0.0}


def test_progress_and_ratings_helpers() -> None:
    text = arena_view.progress_markdown({"A": 7.0, "B": 1.2}, 5.0)
    assert "A 5 / 5 s (done)" in text and "B 1 / 5 s" in text
    values = [None] * 10
    values[0], values[9] = "4", "2"
    assert arena_view.collect_ratings(values) == {"A": {"coherence": 4}, "B": {"naturalness": 2}}
    assert arena_view.collect_ratings([None] * 10) is None


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
    text = arena_view.reveal_markdown(reveal)
    assert "sys-one" in text and "sys-two" in text and expected in text
    assert text.count("| APEX") == len(SCORE_NAMES)


@pytest.mark.parametrize(
    "credit", [{}, {"A": 5.0}, {"A": 5.0, "B": 4.99}, {"A": 5.0, "B": 5.0}, {"A": 9.0, "B": 6.0}]
)
def test_progress_opens_voting_exactly_when_the_rules_accept_a_vote(credit) -> None:
    from annotation.rules import VoteRefused, check_listening

    try:
        check_listening(credit, 5.0)
        accepted = True
    except VoteRefused:
        accepted = False
    text = arena_view.progress_markdown(credit, 5.0)
    assert ("voting is open" in text) == accepted
    assert text.count("(done)") == sum(credit.get(side, 0.0) >= 5.0 for side in ("A", "B"))


def test_served_names_cannot_be_computed_from_the_pool(tmp_path: Path, settings) -> None:
    import hashlib

    clip = tmp_path / "pool" / "suno_v4_0001.flac"
    clip.parent.mkdir()
    clip.write_bytes(b"fLaC-bytes")
    folder = arena_view.served_folder(settings)
    first = Path(arena_view.served_copy(clip, folder))
    again = Path(arena_view.served_copy(clip, folder))  # the same clip in a later battle
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
    fresh = Path(arena_view.served_copy(clip, folder, keep_s=3600))
    assert not stale.exists() and fresh.exists()
    assert clip.exists()  # the pool's file is never touched

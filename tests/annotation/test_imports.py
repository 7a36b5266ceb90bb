"""Music Arena votes into the vote store: imported, idempotent, and never mixed into our boards."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotation.board import select_votes
from annotation.imports import PREFIX, import_music_arena
from annotation.ratings import fit_bradley_terry
from annotation.store import SQLiteVoteStore, VoteRecord


@pytest.fixture(scope="module")
def release(small_demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from apex.demo import load_metadata, simulate_votes
    from apex.sources.music_arena import export_votes

    votes = simulate_votes(load_metadata(small_demo_corpus), 40, seed=9)
    out = export_votes(small_demo_corpus, votes, tmp_path_factory.mktemp("ma"), audio_format="copy")
    batch = next((out / "battle_data").iterdir())
    (batch / "broken.json").write_text("[1, 2")
    return out


def _own_vote(uuid: str) -> VoteRecord:
    return VoteRecord(
        vote_id=f"v-{uuid}",
        battle_uuid=uuid,
        timestamp=1.0e9,
        user_pseudonym="ours",
        session_pseudonym="ours",
        prompt="p",
        is_instrumental=True,
        system_a="our-a",
        system_b="our-b",
        clip_a="a",
        clip_b="b",
        audio_a="a.wav",
        audio_b="b.wav",
        preference="A",
    )


def test_import_is_idempotent_namespaced_and_marked(release: Path, tmp_path: Path) -> None:
    with SQLiteVoteStore(tmp_path / "votes.db") as store:
        first = import_music_arena(store, release)
        assert first.added == 40 and first.already == 0
        assert [name for name, _ in first.skipped] == [
            str(p.relative_to(release)) for p in release.glob("battle_data/*/broken.json")
        ]
        again = import_music_arena(store, release)
        assert (again.added, again.already) == (0, 40)
        votes = store.votes_frame()
    assert len(votes) == 40 and set(votes["source"]) == {"imported"}
    assert votes["vote_id"].str.startswith(PREFIX).all()
    assert votes["battle_uuid"].str.startswith(PREFIX).all()
    assert votes["user_pseudonym"].str.startswith(PREFIX).all()
    assert votes["imported"].all()  # so our own Hub export never republishes them


def test_boards_include_imported_votes_only_when_asked(release: Path, tmp_path: Path) -> None:
    with SQLiteVoteStore(tmp_path / "votes.db") as store:
        store.insert_vote(_own_vote("b1"))
        store.insert_vote(_own_vote("b2"))
        import_music_arena(store, release)
        votes = store.votes_frame()
    ours = select_votes(votes)
    assert set(ours["source"]) == {"live"} and len(ours) == 2
    assert len(select_votes(votes, include_imported=True)) == 42
    only = select_votes(votes, sources=("imported",))
    assert len(only) == 40
    board = fit_bradley_terry(ours, l2=1.0)
    assert set(board.index) == {"our-a", "our-b"}
    both = fit_bradley_terry(select_votes(votes, include_imported=True), l2=1.0)
    assert set(both.index) > {"our-a", "our-b"}


def test_imported_clip_ids_match_the_music_arena_pool(release: Path, tmp_path: Path) -> None:
    from annotation.pool import ClipPool

    with SQLiteVoteStore(tmp_path / "votes.db") as store:
        import_music_arena(store, release)
        votes = store.votes_frame()
    pool = ClipPool.from_music_arena(release)
    assert set(votes["clip_a"]) | set(votes["clip_b"]) == {clip.clip_id for clip in pool}


def test_votes_cli_imports_music_arena_once(release: Path, tmp_path: Path, monkeypatch, capsys):
    from annotation.store import open_store
    from apex.cli import main
    from apex.settings import Settings

    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    assert main(["votes", "import-music-arena", str(release)]) == 0
    first = capsys.readouterr().out
    assert "source=imported" in first
    with open_store(Settings.from_env()) as store:
        counted = store.counts()["votes"]
        assert counted > 0
        assert set(store.votes_frame()["source"]) == {"imported"}
    assert main(["votes", "import-music-arena", str(release)]) == 0
    assert f"Imported 0 Music Arena votes ({counted} already there" in capsys.readouterr().out
    assert main(["votes", "import-music-arena", str(tmp_path / "nowhere")]) == 2  # bad input
    assert "apex votes import-music-arena: error:" in capsys.readouterr().err

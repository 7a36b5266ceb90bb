"""Every vote says where its clips are: the ``pool`` column for the demo, an audiofolder from the
Hub, a local folder and Music Arena's imported release, from the store through to the shards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from annotation.arena import Arena
from annotation.export import export_shards, read_vote_shards
from annotation.imports import import_music_arena
from annotation.pool import ClipPool
from annotation.pool.sources import pool_identity
from annotation.store import SQLiteVoteStore
from tests.annotation.test_arena import IP, SESSION, Clock, listen_both

REV = "0f1e2d3c4b5a69788796a5b4c3d2e1f001234567"


def snapshot(tmp_path: Path, repo_id: str) -> Path:
    """A folder where huggingface_hub's cache keeps ``repo_id`` at revision :data:`REV`."""
    owner, name = repo_id.split("/")
    return tmp_path / "hub" / f"datasets--{owner}--{name}" / "snapshots" / REV


def audiofolder(corpus: Path, dest: Path, n: int = 6) -> Path:
    """``n`` clips of the demo corpus as a plain audiofolder (no ``corpus.json``)."""
    meta = pd.read_csv(corpus / "metadata.csv").head(n)
    (dest / "audio").mkdir(parents=True)
    for file_name in meta["file_name"]:
        shutil.copy(corpus / file_name, dest / file_name)
    meta.to_csv(dest / "metadata.csv", index=False)
    return dest


def one_vote_pool(folder: Path, settings, tmp_path: Path) -> str:
    """Cast one vote in an arena on the pool in ``folder``; the ``pool`` of the exported shard."""
    settings = settings.replace(salt="test-salt", min_listen_s=5.0)
    clock = Clock()
    with SQLiteVoteStore(tmp_path / "votes.sqlite") as store:
        arena = Arena(settings, ClipPool.from_audiofolder(folder), store, clock=clock, seed=1)
        ticket = arena.new_battle(SESSION, IP)
        listen_both(arena, clock, ticket)
        arena.vote(ticket.battle_id, "A", SESSION, IP)
        (stored,) = store.votes_frame()["pool"]
        export_shards(store, tmp_path / "export")
    (released,) = read_vote_shards(tmp_path / "export")["pool"]
    assert stored == released
    return released


def test_votes_on_the_demo_corpus_name_its_seed(small_demo_corpus, settings, tmp_path) -> None:
    assert one_vote_pool(small_demo_corpus, settings, tmp_path) == "demo:0"


def test_votes_on_a_hub_audiofolder_name_the_repo_at_its_revision(
    small_demo_corpus, settings, tmp_path
) -> None:
    folder = audiofolder(small_demo_corpus, snapshot(tmp_path, "someone/ai-clips"))
    assert one_vote_pool(folder, settings, tmp_path) == f"someone/ai-clips@{REV}"


def test_a_local_folder_is_named_not_its_path(small_demo_corpus, tmp_path) -> None:
    folder = audiofolder(small_demo_corpus, tmp_path / "private" / "my-clips")
    assert pool_identity(folder) == "local:my-clips"  # a path may say who runs the Space


@pytest.fixture
def music_arena_copy(small_demo_corpus: Path, tmp_path: Path) -> Path:
    """Music Arena's release layout, where the Hub cache keeps the official dataset."""
    from apex.demo import load_metadata, simulate_votes
    from apex.sources.music_arena import HUB_ID, export_votes

    votes = simulate_votes(load_metadata(small_demo_corpus), 30, seed=3)
    return export_votes(small_demo_corpus, votes, snapshot(tmp_path, HUB_ID), audio_format="copy")


def test_imported_music_arena_votes_name_release_revision_and_batch(
    music_arena_copy, tmp_path
) -> None:
    from apex.sources.music_arena import HUB_ID, read_release

    battles = read_release(music_arena_copy).battles
    with SQLiteVoteStore(tmp_path / "votes.sqlite") as store:
        assert import_music_arena(store, music_arena_copy).added == len(battles)
        votes = store.votes_frame()
    batch_of = dict(zip("music-arena:" + battles["battle_uuid"], battles["batch"], strict=True))
    expected = [f"{HUB_ID}@{REV}:{batch_of[uuid]}" for uuid in votes["battle_uuid"]]
    assert votes["pool"].tolist() == expected
    batches = sorted(p.name for p in (music_arena_copy / "battle_data").iterdir())
    assert pool_identity(music_arena_copy) == f"{HUB_ID}@{REV}:{','.join(batches)}"

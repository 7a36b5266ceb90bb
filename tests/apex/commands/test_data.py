"""``apex data ...`` subcommands: the offline paths, the demo export, listings and SongEval."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from apex.commands import data as data_cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="apex")
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    return args.func(args)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("APEX_DEMO_CLIPS", "16")


def test_arena_demo_then_music_arena_summary(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ma"
    assert _run(["arena-demo", "--out", str(out), "--votes", "25", "--audio", "copy"]) == 0
    assert "DEMO: 25 simulated battles" in capsys.readouterr().out
    assert _run(["music-arena", "--data", str(out)]) == 0
    text = capsys.readouterr().out
    assert "25 battles" in text and "licence" in text


def test_hub_sources_fail_offline_with_a_way_out(capsys) -> None:
    assert _run(["music-arena", "--batch", "02-2025SEP"]) == 2
    assert "could not download" in capsys.readouterr().err
    assert _run(["songeval", "--manifest", "x.jsonl"]) == 2
    assert "--data DIR" in capsys.readouterr().err


def test_engagement_dry_run_and_unknown_layout(tmp_path: Path, capsys) -> None:
    listing = tmp_path / "suno.jsonl"
    rows = [
        {"id": f"s{i}", "audio_url": f"https://cdn/s{i}.mp3", "play_count": i, "upvote_count": 1}
        for i in range(30)
    ]
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _run(["engagement", str(listing), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "30 songs mapped (0 rows skipped)" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("track,mp3\na,b\n")
    assert _run(["engagement", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "found columns ['mp3', 'track']" in capsys.readouterr().err


def test_songeval_manifest_from_a_local_copy(tmp_path: Path, capsys) -> None:
    root = tmp_path / "songeval"
    (root / "mp3").mkdir(parents=True)
    (root / "mp3" / "a.mp3").write_bytes(b"ID3")
    scores = {n: 3 for n in ("Coherence", "Musicality", "Memorability", "Clarity", "Naturalness")}
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "mp3/a.mp3", "aesthetic_scores": scores}) + "\n"
    )
    manifest = tmp_path / "se.jsonl"
    assert _run(["songeval", "--data", str(root), "--manifest", str(manifest)]) == 0
    assert "CC BY-NC-SA 4.0" in capsys.readouterr().out
    assert json.loads(manifest.read_text())["coherence"] == 3

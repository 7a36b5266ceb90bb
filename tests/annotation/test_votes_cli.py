"""``apex votes``: simulate -> export -> load with ``datasets``; refusals and offline failures.

Commands run in-process through the real ``apex`` dispatcher (``apex.cli.main``), configured only
by environment variables, as a maintainer would run them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from apex.cli import main

TOKEN = "hf_FAKEcliTOKEN0123456789abcdef"


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory) -> Path:
    """The 16-clip demo corpus, rendered once and copied into each test's data directory."""
    from apex.demo import build_demo_corpus

    return build_demo_corpus(tmp_path_factory.mktemp("cli-demo") / "demo", seed=0, n_clips=16)


@pytest.fixture
def env(tmp_path, monkeypatch, demo_corpus):
    """An isolated data directory with a small demo corpus and no Hub repo configured."""
    for name in ("APEX_VOTES_REPO", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("APEX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("APEX_DEMO_CLIPS", "16")
    shutil.copytree(demo_corpus, tmp_path / "data" / "demo")  # reused: same seed and size
    return tmp_path


def run(*argv: str) -> int:
    return main(["votes", *argv])


def test_simulate_export_and_load_with_datasets(env, capsys):
    import datasets

    assert run("simulate", "--n", "60", "--seed", "3") == 0
    assert "Added 60 simulated votes" in capsys.readouterr().out
    out = env / "dump"
    assert run("export", "--out", str(out)) == 0
    assert "60 votes" in capsys.readouterr().out
    shards = sorted(str(p) for p in out.glob("votes/**/*.parquet"))
    ds = datasets.load_dataset(
        "parquet", data_files=shards, split="train", cache_dir=str(env / "cache")
    )
    assert ds.num_rows == 60
    assert set(ds["source"]) == {"simulated"}  # every record is marked
    assert set(ds["pool"]) == {"demo:0"}  # and says where its clips are
    assert len(pd.read_csv(out / "votes.csv")) == 60
    assert "| Votes | 60 |" in (out / "README.md").read_text()
    # The export folder the Hub sync uploads holds the same shards.
    synced = sorted((env / "data" / "export").glob("votes/**/*.parquet"))
    assert [p.name for p in synced] == [p.split("/")[-1] for p in shards]


def test_simulate_is_idempotent_per_seed_and_export_appends(env, capsys):
    assert run("simulate", "--n", "20") == 0
    assert run("simulate", "--n", "20") == 0
    assert "20 were already there" in capsys.readouterr().out
    assert run("export", "--out", str(env / "dump")) == 0
    assert run("simulate", "--n", "10", "--seed", "1") == 0
    assert run("export", "--out", str(env / "dump")) == 0
    tables = [pq.read_table(p) for p in sorted((env / "dump").glob("votes/**/*.parquet"))]
    assert [t.num_rows for t in tables] == [20, 10]  # the first shard was left as it was


def test_simulate_refuses_a_store_that_syncs_to_the_hub(env, monkeypatch, capsys):
    monkeypatch.setenv("APEX_VOTES_REPO", "owner/real-votes")
    assert run("simulate", "--n", "5") == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "owner/real-votes" in err and "APEX_VOTES_REPO" in err
    assert not (env / "data" / "votes.sqlite").exists()  # the store was not even opened


def test_push_offline_exits_non_zero_with_a_clear_message(env, monkeypatch, capsys):
    assert run("simulate", "--n", "5") == 0
    monkeypatch.setenv("APEX_VOTES_REPO", "owner/votes")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    assert run("push") == 1
    out, err = capsys.readouterr()
    assert "push to owner/votes failed" in err and "cannot be reached" in err
    assert TOKEN not in out + err


def test_push_without_token_or_repo_says_what_to_set(env, monkeypatch, capsys):
    assert run("push") == 2
    assert "APEX_VOTES_REPO is not set" in capsys.readouterr().err
    monkeypatch.setenv("APEX_VOTES_REPO", "owner/votes")
    assert run("push") == 1
    assert "HF_TOKEN" in capsys.readouterr().err


def test_restore_from_folder_and_status(env, monkeypatch, capsys):
    assert run("simulate", "--n", "12") == 0
    assert run("export", "--out", str(env / "dump")) == 0
    monkeypatch.setenv("APEX_DATA_DIR", str(env / "fresh"))
    assert run("restore", "--from", str(env / "dump")) == 0
    assert run("restore", "--from", str(env / "dump")) == 0
    out = capsys.readouterr().out
    assert "Imported 12 new votes" in out and "Imported 0 new votes" in out
    assert run("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["store"]["votes"] == 12 and status["sync"]["state"] == "local"
    # The shards joined the export folder, so they reach the Hub once a repo is configured.
    assert status["sync"]["pending_exported"] == 12 and status["sync"]["pending_unexported"] == 0
    assert run("restore") == 2  # neither --from nor a repo
    assert run("restore", "--from", str(env / "nowhere")) == 2  # bad input: nothing changed
    assert "not a folder" in capsys.readouterr().err


def test_bad_setting_is_one_clear_line(env, monkeypatch, capsys):
    monkeypatch.setenv("APEX_VOTES_REPO", "not-a-repo-id")
    assert run("status") == 2
    err = capsys.readouterr().err
    assert "owner/name" in err
    # One line in the one CLI convention (apex.cli): "apex <command>: error: <message>".
    assert err.startswith("apex votes status: error: ") and err.count("\n") == 1


def test_votes_without_an_action_is_bad_input(env, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["votes"])
    assert exit_info.value.code == 2 and "ACTION" in capsys.readouterr().err

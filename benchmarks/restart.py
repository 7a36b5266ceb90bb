"""Restart on an empty disk: how soon a Space with N votes on the Hub and a champion serves again.

Run: ``.venv/bin/python benchmarks/restart.py [--votes 10000]``.

Both starts run ``app.py`` in a subprocess on an empty data directory, as a restarted Space does,
against the Hub stand-in (``tests/hub_server.py``: the real ``huggingface_hub`` client over HTTP
on localhost), with the 48-clip demo pool:

- baseline: a first start, nothing on the Hub;
- restart: N simulated votes in the dataset repo (pushed by the real Hub sync) and a promoted
  champion in the model repo (pushed by ``push_version``).

Measured from the process start: ``first_battle_s`` (the first ``/new_battle`` that succeeds),
``first_score_s`` (the first ``/score``; on the restart it must come from the restored
champion), and the votes restored. The ratio is restart / baseline, in the same run. Target
(the arena issue's cold-start budget): first battle <= 30 s with 10,000 votes to restore. Ends
with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.app_process import AppProcess  # after the path insert
from tests.hub_server import HubServer

VOTES, MODELS = "bench/arena-votes", "bench/arena-models"


def _seed_hub(root: Path, corpus: Path, n_votes: int) -> str:
    """Push ``n_votes`` simulated votes and a champion to the stand-in; returns the champion."""
    from annotation.cli import simulated_records
    from annotation.store import open_store
    from annotation.sync import VoteSync
    from apex.checkpoints import save_model
    from apex.demo import load_metadata, simulate_votes
    from apex.encoders.fallback import FALLBACK_DIM
    from apex.heads import ApexHeads, HeadsConfig
    from apex.settings import Settings
    from apex.training.registry import push_version, registry_for

    settings = Settings.from_env({}, data_dir=root / "old-life", votes_repo=VOTES)
    metadata = load_metadata(corpus)
    store = open_store(settings)
    records = simulated_records(simulate_votes(metadata, n_votes, seed=0), metadata)
    for record in records:
        store.insert_vote(record)
    sync = VoteSync(settings, store)
    status = sync.push_now()
    sync.stop(push=False)  # before the store closes: no final push from this old life
    store.close()
    assert status.pending_votes == 0, status
    heads = ApexHeads(HeadsConfig(num_layers=1, dim=FALLBACK_DIM, hidden=[64, 32]))
    version = registry_for(settings).new_version()
    meta = {"encoder_id": "fallback", "kind": "custom", "version": version.name}
    save_model(heads, version, metadata=meta)
    message = push_version(version, MODELS)
    assert message.startswith("pushed"), message
    return version.name


def _start(env: dict[str, str], root: Path, name: str, song: Path) -> dict[str, float | str]:
    """One app start on an empty data directory: seconds to the first battle and score."""
    from gradio_client import Client, handle_file

    from tests.webui.conftest import free_port

    data = root / f"data-{name}"
    env = {**env, "APEX_DATA_DIR": str(data)}
    with AppProcess(env, free_port(), root / f"{name}.log") as app:
        app.wait_up()
        client = Client(app.url, verbose=False, download_files=False)
        client.predict(api_name="/new_battle")
        battle_s = time.monotonic() - app.started
        result = client.predict(handle_file(str(song)), api_name="/score")
        score_s = time.monotonic() - app.started
        app.stop(signal.SIGTERM)
        log = app.output()
    restored = re.search(r"Restored (\d+) votes", log)
    shutil.rmtree(data, ignore_errors=True)
    return {
        "first_battle_s": round(battle_s, 1),
        "first_score_s": round(score_s, 1),
        "restored_votes": int(restored[1]) if restored else 0,
        "model_version": result["model_version"],
    }


def main() -> None:
    """Seed the stand-in, time a first start and a restart, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="apex-restart-"))
    hub = HubServer().start()
    try:
        # This process's huggingface_hub reads the endpoint when first imported: set it first.
        os.environ.update({"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_standin"})
        os.environ["HF_HUB_CACHE"] = str(root / "hf-cache")
        from apex.demo import build_demo_corpus
        from tests.webui.conftest import write_song

        corpus = build_demo_corpus(root / "demo", seed=0, n_clips=48)
        song = write_song(root / "song.wav", seconds=3.0)
        champion = _seed_hub(root, corpus, args.votes)
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_TOKEN": "hf_standin",
            "HF_HUB_CACHE": str(root / "hf-cache"),
            "APEX_POOL": str(corpus),
            "APEX_SALT": "bench-salt",
            "APEX_WARMUP_WAIT_S": "600",
        }
        first = {"APEX_VOTES_REPO": "bench/new-votes", "APEX_MODEL_REPO": "bench/new-models"}
        baseline = _start({**env, **first}, root, "baseline", song)
        again = {"APEX_VOTES_REPO": VOTES, "APEX_MODEL_REPO": MODELS}
        restart = _start({**env, **again}, root, "restart", song)
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)
    ok = restart["restored_votes"] == args.votes and champion in str(restart["model_version"])
    out = {
        "benchmark": "restart",
        "votes": args.votes,
        "baseline": baseline,
        "restart": restart,
        "champion_serves": ok,
        "ratio_first_battle": round(restart["first_battle_s"] / baseline["first_battle_s"], 2),
        "target_first_battle_s": 30.0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

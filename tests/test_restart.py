"""The restart a Space does: the disk is wiped, the Hub brings the state back.

Three ``python app.py`` processes share one Hub stand-in (:mod:`tests.hub_server`, the real
``huggingface_hub`` client over HTTP) and one Hugging Face cache (kept, as the Space image keeps
its preloaded cache); each starts on an empty data directory, as a restarted Space does:

1. simulated listeners vote; SIGTERM (a rebuild): the graceful stop pushes every vote;
2. the votes come back; the app's own refit (due minutes after a new vote) promotes a challenger
   over the demo model and pushes it to the model repo; more votes; SIGKILL (a crash);
3. the promoted version serves, restored from the model repo; every vote on the Hub at the kill is
   back; the ones cast after the last push are lost, and the output says how many.

The numbers are printed (run with ``-s`` to see them): versions before and after, votes pushed,
restored and lost on SIGKILL and on SIGTERM, seconds to the first battle.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.app_process import AppProcess
from tests.hub_server import HubServer
from tests.webui.conftest import free_port, write_song

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

VOTES_REPO, MODEL_REPO = "someone/arena-votes", "someone/arena-models"
REFIT_VOTES = 200  # what the closed-loop test needs for the gate to promote on the demo
TIMEOUT_S = 900.0
VOTERS = 4  # parallel API clients


def _hub_votes(hub: HubServer) -> int:
    """Votes in the dataset repo's shards (rows of every ``votes/**.parquet``)."""
    files = hub.files("dataset", VOTES_REPO)
    return sum(
        pq.read_metadata(io.BytesIO(data)).num_rows
        for name, data in files.items()
        if name.startswith("votes/") and name.endswith(".parquet")
    )


def _store_votes(data_dir: Path) -> int:
    from annotation.store import SQLiteVoteStore

    store = SQLiteVoteStore(data_dir / "votes.sqlite")
    try:
        return int(store.counts()["votes"])
    finally:
        store.close()


class Voters:
    """Listeners with the demo corpus's hidden taste, voting through ``gradio_client``."""

    def __init__(self, url: str, corpus: Path, data_dir: Path, seed: int) -> None:
        from gradio_client import Client

        from annotation.store import SQLiteVoteStore
        from apex.demo import load_metadata
        from apex.demo.listeners import hidden_utility

        self.client = Client(url, verbose=False, download_files=False)
        self.store = SQLiteVoteStore(data_dir / "votes.sqlite")  # to read which clips they hear
        self.utility = hidden_utility(load_metadata(corpus))
        self.rng = np.random.default_rng(seed)

    def battle(self) -> dict:
        return self.client.predict(api_name="/new_battle")[0]

    def vote(self, n: int) -> int:
        """Cast ``n`` votes (one battle each) through the API; returns ``n``."""
        from apex.demo.listeners import listener_votes

        for _ in range(n):
            info = self.battle()
            battle = self.store.get_battle(info["battle_id"])
            a, b = np.array([battle.clip_a]), np.array([battle.clip_b])
            pick = listener_votes(self.utility, a, b, self.rng)[0]
            self.client.predict(info["battle_id"], pick, "", None, api_name="/vote")
        return n

    def close(self) -> None:
        self.store.close()


def _vote(app: AppProcess, corpus: Path, data: Path, n: int, seed: int) -> int:
    """``n`` votes from :data:`VOTERS` listeners voting at once; returns ``n``."""
    from concurrent.futures import ThreadPoolExecutor

    voters = [Voters(app.url, corpus, data, seed=seed * 100 + i) for i in range(VOTERS)]
    shares = [n // VOTERS + (i < n % VOTERS) for i in range(VOTERS)]
    try:
        with ThreadPoolExecutor(VOTERS) as pool:
            return sum(pool.map(lambda vs: vs[0].vote(vs[1]), zip(voters, shares, strict=True)))
    finally:
        for voter in voters:
            voter.close()


def _first_battle(app: AppProcess) -> float:
    """Seconds from the process start to its first battle served through the API."""
    from gradio_client import Client

    app.wait_up()
    client = Client(app.url, verbose=False, download_files=False)
    info = client.predict(api_name="/new_battle")[0]
    assert info["battle_id"]
    return time.monotonic() - app.started


def _served_version(app: AppProcess, song: Path) -> str:
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False, download_files=False)
    return client.predict(handle_file(str(song)), api_name="/score")["model_version"]


def _wait(what: str, check, app: AppProcess, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert app.proc.poll() is None, f"app exited while waiting for {what}"
        assert time.monotonic() < deadline, f"{what} did not happen:\n{app.output()[-6000:]}"
        time.sleep(1.0)


def test_a_space_restart_on_an_empty_disk_loses_only_unpushed_votes(
    tmp_path: Path, small_demo_corpus: Path
) -> None:
    data = tmp_path / "data"
    song = write_song(tmp_path / "song.wav", seconds=3.0)
    report: dict[str, object] = {}
    with HubServer() as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),  # the image's cache: kept
            "HF_TOKEN": "hf_standin_write_token",
            "APEX_DATA_DIR": str(data),
            "APEX_CACHE_DIR": str(tmp_path / "bucket-cache"),  # caches on a bucket: kept
            "APEX_VOTES_REPO": VOTES_REPO,
            "APEX_MODEL_REPO": MODEL_REPO,
            "APEX_SALT": "a-long-random-secret",
            "APEX_POOL": str(small_demo_corpus),
            "APEX_DEMO_CLIPS": "48",
            "APEX_MIN_LISTEN_S": "0",
            "APEX_RATE_LIMIT_VOTES": "100000",
            "APEX_RATE_LIMIT_BATTLES": "100000",
            "APEX_WARMUP_WAIT_S": "900",  # /score waits for the scorer on a loaded machine
            "APEX_LOUDNESS_MATCH": "0",  # less CPU on a shared test machine
            "APEX_REFIT_HOURS": "0",
            "APEX_REFIT_NICE": "0",
        }
        # Run 2 refits once a new vote arrived and 3.6 s passed (restored votes do not count).
        refit_env = {**env, "APEX_REFIT_HOURS": "0.001", "APEX_REFIT_MIN_VOTES": "100000"}

        # 1. Votes arrive; a rebuild stops the app with SIGTERM: the graceful stop pushes them.
        with AppProcess(env, free_port(), tmp_path / "run1.log") as app:
            report["first_battle_s_run1"] = round(_first_battle(app), 1)
            report["version_before"] = _served_version(app, song)
            cast_1 = _vote(app, small_demo_corpus, data, REFIT_VOTES, seed=1)
            assert app.stop(signal.SIGTERM) == 0, app.output()[-3000:]
        pushed_1 = _hub_votes(hub)
        report["sigterm"] = {"cast": cast_1, "pushed": pushed_1, "lost": cast_1 - pushed_1}
        assert pushed_1 == cast_1, app.output()[-3000:]
        shutil.rmtree(data)  # the Space's disk is wiped

        # 2. They come back; enough votes for a refit, which is promoted and pushed; a crash.
        with AppProcess(refit_env, free_port(), tmp_path / "run2.log") as app:
            report["first_battle_s_run2"] = round(_first_battle(app), 1)
            assert _store_votes(data) == pushed_1
            _wait("the refit worker", lambda: "refit worker ready" in app.output(), app)
            cast_2 = _vote(app, small_demo_corpus, data, 1, seed=2)  # the refit is due now

            def promoted() -> bool:
                return "champion.json" in hub.files("model", MODEL_REPO)

            # A refit on ~200 demo votes is promoted most times, not every time (in one CI run
            # it held 0.425 against the serving 0.450): after a refusal, votes come in and the
            # next refit is the one this test needs. Restart durability is what it checks.
            for attempt in range(4):
                refusals = attempt + 1
                _wait(
                    "a refit decision",
                    lambda: promoted() or app.output().count(" not promoted:") >= refusals,  # noqa: B023
                    app,
                )
                if promoted():
                    break
                cast_2 += _vote(app, small_demo_corpus, data, 40, seed=10 + attempt)
            _wait("a promoted refit pushed to the model repo", promoted, app)
            champion = json.loads(hub.files("model", MODEL_REPO)["champion.json"])["version"]
            _wait("the promoted refit serving", lambda: champion in _served_version(app, song), app)
            report["version_promoted"] = _served_version(app, song)
            pushed_commit = hub.commits("model", MODEL_REPO)[-1][0]
            report["model_repo_commit"] = pushed_commit[:12]
            cast_2 += _vote(app, small_demo_corpus, data, 24, seed=3)  # a crash loses these
            on_hub_at_kill = _hub_votes(hub)
            app.stop(signal.SIGKILL)
        cast_total = cast_1 + cast_2
        shutil.rmtree(data)

        # 3. Start again on an empty disk: the champion and the pushed votes are back.
        with AppProcess(env, free_port(), tmp_path / "run3.log") as app:
            report["first_battle_s_run3"] = round(_first_battle(app), 1)
            restored = _store_votes(data)
            report["version_after"] = _served_version(app, song)
            assert app.stop(signal.SIGTERM) == 0
        log3 = app.output()
    report["sigkill"] = {
        "cast": cast_total,
        "pushed_before_kill": on_hub_at_kill,
        "restored": restored,
        "lost": cast_total - restored,
    }
    print("\nRESTART TEST " + json.dumps(report))
    assert restored == on_hub_at_kill  # every vote pushed before the kill is back
    assert report["version_after"] == report["version_promoted"] != report["version_before"]
    # restored from the exact commit that pushed it
    assert f"Restored champion {champion} from {MODEL_REPO}@{pushed_commit}" in log3

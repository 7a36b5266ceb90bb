"""``python app.py`` stops gracefully on SIGTERM, as a Space restart or rebuild sends it.

Real processes: the handler must work with Gradio's launch loop blocking the main thread, and
the graceful stop must push the votes not yet on the Hub (the Hub stand-in,
:mod:`tests.hub_server`, receives them through the real ``huggingface_hub`` client). The whole
restart (a wiped disk, SIGKILL too) is tests/test_restart.py.
"""

from __future__ import annotations

import io
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.app_process import AppProcess
from tests.hub_server import HubServer
from tests.webui.conftest import free_port

pytestmark = pytest.mark.slow


def test_sigterm_runs_the_shutdown_path(tmp_path: Path, small_demo_corpus: Path) -> None:
    env = {"APEX_DATA_DIR": str(tmp_path / "data"), "APEX_POOL": str(small_demo_corpus)}
    with AppProcess(env, free_port(), tmp_path / "app.log") as app:
        app.wait_up()
        code = app.stop(signal.SIGTERM, timeout=60)
    log = app.output()
    assert code == 0, log[-3000:]
    assert "SIGTERM received" in log and "Stopped." in log, log[-3000:]


def test_sigterm_pushes_the_votes_not_yet_on_the_hub(
    tmp_path: Path, small_demo_corpus: Path
) -> None:
    from gradio_client import Client

    with HubServer() as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
            "HF_TOKEN": "hf_standin_write_token",
            "APEX_DATA_DIR": str(tmp_path / "data"),
            "APEX_POOL": str(small_demo_corpus),
            "APEX_VOTES_REPO": "someone/votes",
            "APEX_MIN_LISTEN_S": "0",
            "APEX_LOUDNESS_MATCH": "0",
        }
        with AppProcess(env, free_port(), tmp_path / "app.log") as app:
            app.wait_up()
            client = Client(app.url, verbose=False, download_files=False)
            for _ in range(5):  # battles and votes work before the model has loaded
                info = client.predict(api_name="/new_battle")[0]
                client.predict(info["battle_id"], "A", "", None, api_name="/vote")
            # The next scheduled push is minutes away: only the graceful stop can push these.
            assert app.stop(signal.SIGTERM, timeout=120) == 0, app.output()[-3000:]
        shards = {
            name: data
            for name, data in hub.files("dataset", "someone/votes").items()
            if name.endswith(".parquet")
        }
    rows = sum(pq.read_metadata(io.BytesIO(data)).num_rows for data in shards.values())
    assert rows == 5, app.output()[-3000:]

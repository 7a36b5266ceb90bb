"""``python app.py`` stops gracefully on SIGTERM, as a Space restart or rebuild sends it.

A real process: the handler must work with Gradio's launch loop blocking the main thread. The
votes-reach-the-Hub half of the graceful stop is in tests/test_restart.py (against the Hub
stand-in).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.app_process import AppProcess
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

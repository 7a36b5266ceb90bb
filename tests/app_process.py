"""``python app.py`` as a real process, for tests that stop it as a Space does (SIGTERM, SIGKILL).

:class:`AppProcess` starts the entry point with an environment of the test's choosing (the Hub
disabled unless the test points ``HF_ENDPOINT`` at a stand-in), waits until the page answers,
and stops it with a signal, keeping its log for the assertions and for a failing test's report.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The environment every app process gets (the test adds its own on top).
BASE_ENV = {
    "PYTHONPATH": str(ROOT),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYTHONUNBUFFERED": "1",
}


class AppProcess:
    """One ``python app.py`` process listening on ``127.0.0.1:port``; its output goes to ``log``.

    Args:
        env: variables added to :data:`BASE_ENV` and the caller's ``PATH``/``HOME``.
        port: the port it serves on (``APEX_PORT``).
        log: file that receives stdout and stderr.
    """

    def __init__(self, env: Mapping[str, str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}/"
        keep = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
        full = {**keep, **BASE_ENV, "APEX_HOST": "127.0.0.1", "APEX_PORT": str(port), **env}
        self._out = open(log, "ab")  # noqa: SIM115  # closed in wait()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=full,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_up(self, timeout: float = 300.0) -> float:
        """Seconds from start until the page answers; raises AssertionError when it never does."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"app.py exited early:\n{self.output()[-4000:]}"
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return time.monotonic() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise AssertionError(f"app.py did not answer in {timeout} s:\n{self.output()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        """Send ``sig`` and wait for the exit; returns the exit code (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        """Wait for the exit (SIGKILL after ``timeout``); returns the exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._out.close()
        return code

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace")

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop(signal.SIGKILL, timeout=30)
        elif not self._out.closed:
            self._out.close()

"""apex.lifeline: a worker outlives the thread that started it, not the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The parent: starts the child from a thread that ends at once, prints the child's pid, waits.
PARENT = """
import subprocess, sys, threading, time
child = {}
def start():
    code = "import os, time; from apex.lifeline import exit_with_parent; "
    code += "exit_with_parent(os.getppid()); time.sleep(120)"
    child["proc"] = subprocess.Popen([sys.executable, "-c", code])
t = threading.Thread(target=start); t.start(); t.join()
print(child["proc"].pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_outlives_its_starting_thread_and_dies_with_its_parent() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        child = int(parent.stdout.readline())
        time.sleep(1.5)  # the starting thread is long gone; the watchdog has looked 3 times
        assert _alive(child), "the worker died with the thread that started it"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the worker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)

"""The refit worker's error handling without a real refit: an expected failure keeps the
champion and is shown in the status; a bug is raised (not swallowed); the thread survives both."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from annotation.refit_worker import RefitWorker
from apex.settings import Settings
from tests.annotation.test_refit_job import FakeStore


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "data")


def test_an_expected_failure_is_kept_in_the_status(settings) -> None:
    def refit(_settings, _store):
        raise FileNotFoundError("APEX_ENGAGEMENT='/nowhere': no Parquet shards there")

    worker = RefitWorker(settings, None, FakeStore(), refit=refit)
    assert worker.run_once() is False
    assert worker.status.last_error.startswith("FileNotFoundError") and worker.status.runs == 1
    assert not worker.status.running


def test_a_bug_in_the_refit_is_raised_and_recorded(settings) -> None:
    def refit(_settings, _store):
        return None.version  # a programming error, not a refit failure

    worker = RefitWorker(settings, None, FakeStore(), refit=refit)
    with pytest.raises(AttributeError):
        worker.run_once()
    assert "(a bug)" in worker.status.last_error and not worker.status.running
    with pytest.raises(AttributeError):  # the run lock was released: it runs (and fails) again
        worker.run_once()
    assert worker.status.runs == 2


def test_the_background_thread_survives_a_bug_and_shows_it(settings) -> None:
    calls = []

    def refit(_settings, _store):
        calls.append(1)
        raise KeyError("oops")

    store = FakeStore(pd.DataFrame({"x": range(3)}))
    worker = RefitWorker(settings, None, store, refit=refit, poll_s=0.01).start()
    try:
        worker.trigger()
        deadline = time.monotonic() + 5.0
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.trigger()  # the thread is still alive and runs again
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    assert len(calls) >= 2 and "KeyError" in worker.status.last_error

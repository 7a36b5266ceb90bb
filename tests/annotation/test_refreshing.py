"""Values recomputed off the request path (:mod:`annotation.refreshing`), and the consensus board
the contrarian flag reads (:class:`annotation.board.Consensus`) built on them."""

from __future__ import annotations

import threading
import time

import pytest

from annotation.board import Consensus
from annotation.refreshing import Refreshing, RefreshingMap, StoreFit
from annotation.store import open_store
from tests.webui.conftest import vote_record


class Source:
    """A computation that blocks until released, counting its runs; ``version`` is settable."""

    def __init__(self) -> None:
        self.version, self.runs = 0, 0
        self.gate = threading.Event()

    def compute(self) -> int:
        self.runs += 1
        assert self.gate.wait(10)
        return self.version * 10


def test_readers_get_the_last_result_while_a_recomputation_runs() -> None:
    source = Source()
    value = Refreshing(source.compute, version=lambda: source.version)
    start = time.perf_counter()
    assert value.get() is None  # nothing yet, and the reader did not wait for the fit
    assert time.perf_counter() - start < 1.0
    source.gate.set()
    assert value.get(wait_s=10) == 0
    source.gate.clear()
    source.version = 1  # the store changed
    start = time.perf_counter()
    assert value.get() == 0  # the last result at once; the new fit runs behind
    assert time.perf_counter() - start < 1.0
    source.gate.set()
    deadline = time.monotonic() + 10
    while value.get() != 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert value.get() == 10 and source.runs == 2  # unchanged source: no further fit


def test_a_busy_source_is_refitted_at_most_every_interval() -> None:
    source = Source()
    source.gate.set()
    now = [0.0]
    value = Refreshing(
        source.compute, version=lambda: source.version, min_interval_s=60.0, clock=lambda: now[0]
    )
    assert value.get(wait_s=10) == 0
    source.version = 1
    assert value.refresh() is False and source.runs == 1  # too soon
    now[0] = 61.0
    assert value.refresh() is True


def test_refits_take_at_most_the_duty_share_but_the_cold_start_does_not_count() -> None:
    version = [0]

    def slow() -> int:
        time.sleep(0.2)  # every computation takes 0.2 s
        return version[0]

    value = Refreshing(slow, version=lambda: version[0], duty=0.01)  # 0.2 s -> 20 s apart
    assert value.get(wait_s=10) == 0
    version[0] = 1
    assert value.refresh() is True  # the first computation (a cold start) does not pace
    deadline = time.monotonic() + 10
    while value.get() != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert value.get() == 1
    version[0] = 2
    assert value.refresh() is False  # the refit took 0.2 s: the next waits 20 s


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_first_failure_reaches_the_reader() -> None:
    def broken() -> int:
        raise ZeroDivisionError("a bug in the fit")

    value = Refreshing(broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        value.get(wait_s=10)


def test_map_keys_are_separate_values_computed_one_at_a_time() -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def compute(key) -> str:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return f"view {dict(key)['board']}"

    views = RefreshingMap(compute)
    keys = [(("board", name),) for name in ("all", "vocal", "instrumental")]
    for key in keys:
        views.entry(key).refresh()
    assert [views.get(key, wait_s=10) for key in keys] == [
        "view all",
        "view vocal",
        "view instrumental",
    ]
    assert most[0] == 1


def test_consensus_fits_in_the_background_and_refits_after_new_votes(settings) -> None:
    store = open_store(settings)
    try:
        for i in range(10):
            store.insert_vote(vote_record(i, "good", "bad", "A" if i < 8 else "B", True, 0.7))
        consensus = Consensus(store, refresh_s=60.0)
        board = consensus.ratings(1000.0, wait_s=10)
        assert board is not None and board["good"] > board["bad"]
        for i in range(10, 40):
            store.insert_vote(vote_record(i, "good", "bad", "B", True, 0.7))
        assert consensus.ratings(1030.0) == board  # within the interval: the last fit
        consensus.ratings(1061.0)  # new votes and the interval passed: a refit starts
        deadline = time.monotonic() + 10
        while consensus.ratings(1062.0) == board and time.monotonic() < deadline:
            time.sleep(0.01)
        assert consensus.ratings(1062.0)["bad"] > consensus.ratings(1062.0)["good"]
    finally:
        store.close()


def test_a_big_stores_consensus_fits_in_the_worker_process(settings, monkeypatch) -> None:
    from annotation import board, refreshing

    store = open_store(settings)
    try:
        for i in range(10):
            store.insert_vote(vote_record(i, "good", "bad", "A" if i < 8 else "B", True, 0.7))
        monkeypatch.setattr(refreshing, "WORKER_VOTES", 1)
        consensus = Consensus(store, settings=settings)
        assert consensus.ratings(wait_s=60) == board.consensus_ratings(store)
        assert consensus._worker._pool is not None  # it ran there, not on a thread here
    finally:
        store.close()


def test_a_reader_waits_for_a_refit_only_when_it_is_quick() -> None:
    source, delay = Source(), [0.0]
    source.gate.set()

    def compute() -> int:
        time.sleep(delay[0])
        return source.compute()

    value = Refreshing(compute, version=lambda: source.version)
    assert value.get(wait_s=10) == 0
    source.version, delay[0] = 1, 0.5
    assert value.get(fresh_wait_s=5.0) == 10  # the last fit was quick: this one is waited for
    source.version = 2
    start = time.perf_counter()
    assert value.get(fresh_wait_s=0.2) == 10  # the last took 0.5 s: the last result, at once
    assert time.perf_counter() - start < 0.4


def test_the_workers_store_reads_only_new_votes_and_matches_a_full_read(settings) -> None:
    from annotation.refreshing import _NewVotesOnly

    store = open_store(settings)
    try:
        votes = _NewVotesOnly(store)
        assert votes.votes_frame().empty and votes.max_row_id() == 0
        for i in range(5):
            store.insert_vote(vote_record(i, "good", "bad", "A", True, 0.7))
        first = votes.votes_frame()
        votes.OVERLAP_ROWS = 2  # re-reads the last two and the new ones
        for i in range(5, 9):
            store.insert_vote(vote_record(i, "good", "bad", "B", True, 0.7))
        assert votes.votes_frame().equals(store.votes_frame()) and len(first) == 5
    finally:
        store.close()


def test_a_store_closed_during_a_fit_gives_none_not_an_error(settings) -> None:
    # The app stopping closes the store while a background fit may be reading it.
    store = open_store(settings)
    store.insert_vote(vote_record(0, "good", "bad", "A", True, 0.7))

    def close_then_fit(s):
        s.close()
        return s.votes_frame()

    assert StoreFit(store, close_then_fit, refresh_s=60.0).get(1000.0, wait_s=10) is None

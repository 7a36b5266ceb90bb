"""The composition root (:mod:`webui.services`): warm-up, failures and what they say."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from webui.services import NotReady, Services


def test_services_report_warming_then_ready(settings) -> None:
    gate = threading.Event()
    services = Services(
        settings,
        builders={"store": lambda s, b: "STORE", "scorer": lambda s, b: gate.wait(5) and "SCORER"},
    ).start()
    with pytest.raises(NotReady, match="warming up"):
        services.get("scorer")
    assert "APEX scorer warming up" in services.status_line()
    gate.set()
    assert services.wait(5)
    assert services.scorer == "SCORER" and services.status_line() == ""


def test_failed_service_fails_its_dependants_with_the_reason(settings) -> None:
    def broken(s, b):
        raise OSError("disk full")

    services = Services(
        settings,
        builders={
            "pool": lambda s, b: "POOL",
            "arena": lambda s, b: "ARENA",
            "scorer": broken,
            "scoring": lambda s, b: "SCORING",
        },
    ).start(background=False)
    assert not services.wait(1)
    with pytest.raises(NotReady, match="disk full"):
        services.get("scorer")
    with pytest.raises(NotReady, match="could not start: needs the APEX scorer"):
        services.get("scoring")
    with pytest.raises(NotReady, match="disk full"):  # a waiting caller is told at once
        services.wait_for("scorer", timeout=60.0)
    # The arena opens without the model: battles and votes do not need it.
    assert services.arena == "ARENA" and services.get("pool") == "POOL"


def test_optional_service_failure_keeps_the_app_up(settings) -> None:
    def broken(s, b):
        raise RuntimeError("hub down")

    services = Services(settings, builders={"store": lambda s, b: "STORE", "sync": broken}).start(
        background=False
    )
    assert services.wait(1)
    assert services.store == "STORE"
    assert services.status_line() == ""


def test_close_closes_every_service_and_raises_the_first_error(settings) -> None:
    closed: list[str] = []

    class Worker:
        def __init__(self, name: str, error: Exception | None = None) -> None:
            self.name, self.error = name, error

        def stop(self) -> None:
            closed.append(self.name)
            if self.error is not None:
                raise self.error

    services = Services(
        settings,
        builders={
            "store": lambda s, b: Worker("store"),
            "sync": lambda s, b: Worker("sync", TypeError("a bug in the last push")),
            "refit": lambda s, b: Worker("refit"),
        },
    ).start(background=False)
    with pytest.raises(TypeError, match="a bug"):  # a bug surfaces, not a log line
        services.close()
    assert closed == ["refit", "sync", "store"]  # the store is still closed, last


def _wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_service_whose_start_raises_is_retried_with_its_dependants(settings) -> None:
    attempts: list[float] = []

    def flaky(s, b):
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise OSError("the model folder is busy")
        return "SCORER"

    services = Services(
        settings,
        builders={"store": lambda s, b: "STORE", "scorer": flaky, "scoring": lambda s, b: "ON"},
        retry_s=0.05,
    ).start()
    try:
        assert services.wait(10) is False  # the first pass ends with the scorer failed...
        assert _wait_until(lambda: "retry" in services.status()["scorer"].detail)
        detail = services.status()["scorer"].detail
        assert "the model folder is busy" in detail and "[retry " in detail  # on the About tab
        # ...and the scorer comes up on a retry, the scoring (which needs it) after it.
        assert _wait_until(lambda: services.ready("scoring"))
    finally:
        services.close()
    assert services.scorer == "SCORER" and services.get("scoring") == "ON"
    assert services.status()["scorer"].state == "ready" and services.status_line() == ""
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[1] > gaps[0] * 1.5  # backoff: each wait doubles


def test_close_stops_the_retries(settings) -> None:
    attempts: list[int] = []

    def broken(s, b):
        attempts.append(1)
        raise OSError("disk full")

    services = Services(settings, builders={"pool": broken}, retry_s=0.05).start(background=False)
    services.close()
    seen = len(attempts)
    time.sleep(0.3)
    assert len(attempts) == seen <= 2

"""Vote rules said once: the listening rule (what the UI asks) and the open-battle checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from annotation.rules import (
    ListenEvent,
    VoteRefused,
    check_listening,
    check_open_battle,
    listen_status,
    listened_seconds,
)


def test_listen_status_says_what_is_missing_per_side() -> None:
    status = listen_status({"A": 7.5, "B": 20.0}, 10.0)
    assert not status.can_vote
    assert status.missing == {"A": pytest.approx(2.5), "B": 0.0}


def test_listen_status_counts_a_missing_side_as_unheard_and_forgives_rounding() -> None:
    assert listen_status({"A": 10.0}, 10.0).missing == {"A": 0.0, "B": 10.0}
    assert listen_status({"A": 10.0 - 1e-12, "B": 10.0}, 10.0).can_vote
    assert listen_status({}, 0.0).can_vote  # no minimum: any vote may be cast


@pytest.mark.parametrize("credit", [{"A": 3.0, "B": 12.0}, {"A": 12.0, "B": 12.0}, {}])
def test_the_server_refuses_exactly_when_the_status_says_no(credit) -> None:
    status = listen_status(credit, 10.0)
    if status.can_vote:
        check_listening(credit, 10.0)
    else:
        with pytest.raises(VoteRefused) as err:
            check_listening(credit, 10.0)
        assert err.value.code == "not_listened"
        for side, need in status.missing.items():
            assert (f"clip {side}" in str(err.value)) == (need > 0)


def test_listen_status_on_server_credit_caps_claims_by_elapsed_time() -> None:
    events = [ListenEvent("A", 30.0, 105.0), ListenEvent("B", 12.0, 120.0)]
    credit = listened_seconds(events, issued_at=100.0)
    status = listen_status(credit, 10.0)
    assert credit == {"A": 5.0, "B": 12.0} and status.missing["A"] == pytest.approx(5.0)


def _battle(**kw):
    return SimpleNamespace(**{"session": "s1", "status": "open", "issued_at": 100.0, **kw})


@pytest.mark.parametrize(
    ("battle", "session", "now", "code"),
    [
        (None, "s1", 110.0, "unknown_battle"),
        (_battle(), "s2", 110.0, "wrong_session"),
        (_battle(status="voted"), "s1", 110.0, "already_voted"),
        (_battle(), "s1", 100.0 + 601.0, "expired"),
    ],
)
def test_check_open_battle_refuses_with_its_code(battle, session, now, code) -> None:
    with pytest.raises(VoteRefused) as err:
        check_open_battle(battle, session, now, ttl_s=600.0)
    assert err.value.code == code


def test_check_open_battle_accepts_an_open_battle_of_this_session() -> None:
    check_open_battle(_battle(), "s1", 699.0, ttl_s=600.0)

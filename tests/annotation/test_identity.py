"""Pseudonyms and the salt: stable, salted, never the raw value; salt generated once, 0600."""

from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from annotation.identity import SALT_FILE, Pseudonymizer, load_or_create_salt


def test_salt_from_settings_wins(settings) -> None:
    assert load_or_create_salt(settings.replace(salt="s3cret")) == "s3cret"
    assert not (settings.data_dir / SALT_FILE).exists()


def test_salt_generated_once_persisted_private_and_warned(settings, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="annotation.identity"):
        first = load_or_create_salt(settings)
    assert "APEX_SALT is not set" in caplog.text
    path = settings.data_dir / SALT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="annotation.identity"):
        assert load_or_create_salt(settings) == first
    assert caplog.text == ""  # warned once, when generated
    assert [p.name for p in settings.data_dir.iterdir()] == [SALT_FILE]  # no temp files left


def test_concurrent_first_use_agrees_on_one_salt(settings) -> None:
    with ThreadPoolExecutor(8) as pool:
        salts = set(pool.map(lambda _: load_or_create_salt(settings), range(16)))
    assert len(salts) == 1


def test_empty_salt_file_is_refused(settings) -> None:
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / SALT_FILE).write_text("")
    with pytest.raises(ValueError, match="delete it"):
        load_or_create_salt(settings)


def test_pseudonyms_are_stable_salted_and_hide_the_input() -> None:
    one, other = Pseudonymizer("salt-1"), Pseudonymizer("salt-2")
    voter = one.voter("sess", "203.0.113.9")
    assert voter == one.voter("another-session", "203.0.113.9")  # one IP, one voter
    assert voter != one.voter("sess", "203.0.113.10")
    assert voter != other.voter("sess", "203.0.113.9")  # the salt matters
    assert "203.0.113.9" not in voter and len(voter) == 32
    assert one.voter("sess", None) != one.voter("sess2", None)  # no IP: per session
    assert one.session("sess") == one.session("sess") != one.session("sess2")
    assert one.session("sess") != one.voter("sess", None)  # separate hash families


def test_refuses_empty_inputs() -> None:
    with pytest.raises(ValueError, match="salt is empty"):
        Pseudonymizer("")
    with pytest.raises(ValueError, match="session id"):
        Pseudonymizer("s").session("")
    with pytest.raises(ValueError, match="neither"):
        Pseudonymizer("s").voter("", None)

"""Settings: defaults, parsing, validation errors, secrets, and the README table staying in step."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from apex.settings import Settings, SettingsError, _variable

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_safe(tmp_path):
    s = Settings.from_env({}, data_dir=tmp_path)
    assert s.model == "auto"
    assert s.min_listen_s == 5.0
    assert s.votes_repo is None
    assert s.store_path.parent == tmp_path


def test_env_values_are_parsed():
    s = Settings.from_env(
        {
            "APEX_DATA_DIR": "/tmp/x",
            "APEX_MIN_LISTEN_S": "2.5",
            "APEX_RATE_LIMIT_VOTES": "7",
            "APEX_VOTES_PRIVATE": "yes",
            "APEX_VOTES_REPO": "me/votes",
        }
    )
    assert s.data_dir == Path("/tmp/x")
    assert s.min_listen_s == 2.5
    assert s.rate_limit_votes == 7
    assert s.votes_private is True
    assert s.votes_repo == "me/votes"


def test_blank_values_fall_back_to_defaults():
    assert Settings.from_env({"APEX_MIN_LISTEN_S": "  "}).min_listen_s == 5.0


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"APEX_MIN_LISTEN_S": "abc"}, "APEX_MIN_LISTEN_S='abc' is not a number"),
        ({"APEX_MIN_LISTEN_S": "-1"}, "below its minimum"),
        ({"APEX_MIN_LISTEN_S": "nan"}, "NaN"),
        ({"APEX_RATE_LIMIT_VOTES": "2.5"}, "is not an integer"),
        ({"APEX_PRECISION": "fp8"}, "is not one of fast, reference"),
        ({"APEX_VOTES_PRIVATE": "maybe"}, "not a yes/no value"),
        ({"APEX_VOTES_REPO": "novotes"}, "owner/name"),
        ({"APEX_SYNC_MINUTES": "1"}, "below its minimum 5"),
        ({"APEX_PORT": "70000"}, "above its maximum"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env, fragment):
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert fragment in str(err.value)
    assert next(iter(env)) in str(err.value)


def test_overrides_are_validated_too():
    with pytest.raises(SettingsError):
        Settings.from_env({}, min_listen_s=-3.0)


def test_secrets_are_not_printed():
    s = Settings.from_env({"APEX_SALT": "topsecret", "APEX_DATABASE_URL": "postgresql://u:pw@h/db"})
    text = repr(s)
    assert "topsecret" not in text and "pw@" not in text
    assert s.salt == "topsecret"


def test_every_variable_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(APEX_[A-Z_]+)`", readme))
    declared = {_variable(f) for f in dataclasses.fields(Settings)}
    assert len(declared) == len(dataclasses.fields(Settings))
    assert "APEX_CACHE_DIR" in declared  # the one field whose variable is not APEX_<NAME>
    missing = declared - documented
    assert not missing, f"README.md lacks a row for {sorted(missing)}"
    unknown = documented - declared
    assert not unknown, f"README.md documents variables that do not exist: {sorted(unknown)}"


def test_refit_sources_are_checked_and_pinning_follows_apex_model() -> None:
    from apex.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=r"APEX_REFIT_SOURCES.*bogus"):
        Settings.from_env({"APEX_REFIT_SOURCES": "live,bogus"})
    with pytest.raises(SettingsError, match="APEX_REFIT_SOURCES"):
        Settings.from_env({"APEX_REFIT_SOURCES": " , "})
    assert Settings.from_env({"APEX_REFIT_SOURCES": "live, simulated"}).refit_sources
    assert not Settings.from_env({}).model_pinned
    assert Settings.from_env({"APEX_MODEL": "demo"}).model_pinned

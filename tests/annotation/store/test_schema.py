"""The store's tables come from the vocabulary: every CHECK lists exactly its tuple's values."""

from __future__ import annotations

import re
import sqlite3

import pytest

from annotation.store.records import BATTLE_STATUSES, SOURCES
from annotation.store.sql import POSTGRES, SQLITE, migrations, one_of
from apex.tasks import PREFERENCES, SIDES


def _allowed(statements: tuple[str, ...], column: str) -> tuple[str, ...]:
    text = " ".join(statements)
    found = re.search(
        rf"{column} TEXT NOT NULL(?: DEFAULT '\w+')? CHECK \({column} IN \(([^)]*)\)\)", text
    )
    assert found, column
    return tuple(value.strip().strip("'") for value in found.group(1).split(","))


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES])
def test_every_check_is_its_vocabulary(dialect) -> None:
    first = migrations(dialect)[0]
    assert _allowed(first, "preference") == PREFERENCES
    assert _allowed(first, "side") == SIDES
    assert _allowed(first, "source") == SOURCES
    assert _allowed(first, "status") == BATTLE_STATUSES
    assert f"DEFAULT '{BATTLE_STATUSES[0]}'" in " ".join(first)


def test_both_backends_create_the_same_columns() -> None:
    def columns(dialect) -> list[str]:
        text = " ".join(" ".join(version) for version in migrations(dialect))
        return re.findall(r"(?:^|[(,]|ADD COLUMN)\s*\"?(\w+)\"? [A-Z]", text)

    assert columns(SQLITE) == columns(POSTGRES)


def test_sqlite_refuses_a_value_outside_the_vocabulary_at_the_sql_level(tmp_path) -> None:
    con = sqlite3.connect(tmp_path / "schema.sqlite")
    for version in migrations(SQLITE):
        for statement in version:
            con.execute(statement)
    insert = "INSERT INTO listen_events (battle_id, side, seconds, server_time) VALUES (?, ?, 1, 2)"
    con.execute(insert, ("b", "A"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        con.execute(insert, ("b", "C"))


def test_one_of_refuses_a_value_that_would_break_the_sql() -> None:
    assert one_of("side", ("A", "B")) == "side TEXT NOT NULL CHECK (side IN ('A', 'B'))"
    with pytest.raises(ValueError, match="quote"):
        one_of("source", ("it's",))

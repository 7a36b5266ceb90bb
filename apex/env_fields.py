"""Typed ``APEX_*`` variables: how a settings field declares, parses and validates its variable.

A field made by :func:`env_field` carries its variable's name, a one-line description and its
checks (``choices``, ``min``, ``max``, ``check``) in its metadata; :func:`parse_env` turns the
variable's text into the field's type and :func:`check_env` validates a value, raising
:class:`SettingsError` with what was wrong and what to set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable and the fix."""


def split_list(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def env_field(
    name: str,
    doc: str,
    default: Any = None,
    *,
    check: Callable[[str, Any], None] | None = None,
    **checks: Any,
) -> Any:
    """A dataclass field read from variable ``name`` (``default`` may be a factory).

    ``checks``: ``choices`` (allowed values), ``min``/``max`` (bounds), ``secret`` (hidden in
    ``repr``); ``check(name, value)`` raises :class:`SettingsError` for any other rule.
    """
    meta = {"env": name, "doc": doc, **checks}
    if check is not None:
        meta["check"] = check
    if callable(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _kind(f: dataclasses.Field) -> str:
    text = str(f.type)
    for kind in ("bool", "int", "float", "Path"):
        if kind in text:
            return kind
    return "str"


def parse_env(f: dataclasses.Field, raw: str) -> Any:
    """The value of ``f``'s variable text ``raw``, in the field's type (bool, int, float, Path)."""
    name, kind = f.metadata["env"], _kind(f)
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} is not a yes/no value; use 1/0, true/false or yes/no.")
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is not {'an integer' if kind == 'int' else 'a number'}; "
                f"set it like {name}={f.default}."
            ) from None
    if kind == "Path":
        return Path(raw).expanduser()
    return raw


def check_env(f: dataclasses.Field, value: Any) -> None:
    """Raise :class:`SettingsError` when ``value`` breaks one of ``f``'s checks."""
    meta, name = f.metadata, f.metadata["env"]
    if isinstance(value, float) and value != value:  # NaN
        raise SettingsError(f"{name} is NaN; set a number such as {f.default}.")
    if "choices" in meta and value not in meta["choices"]:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(meta['choices'])}.")
    if "min" in meta and value < meta["min"]:
        raise SettingsError(f"{name}={value!r} is below its minimum {meta['min']}.")
    if "max" in meta and value > meta["max"]:
        raise SettingsError(f"{name}={value!r} is above its maximum {meta['max']}.")
    if "check" in meta:
        meta["check"](name, value)

"""The ``apex`` command line: each command module's ``register(subparsers)`` adds a subcommand
setting ``func`` (namespace -> exit code); ``apex votes`` joins through the ``apex.cli``
entry-point group, so ``apex`` never imports ``annotation``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.metadata
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

EXIT_OK = 0
EXIT_FAILED = 1  # ran, could not do all
EXIT_USAGE = 2  # bad input, nothing changed

#: Errors that mean the input was wrong (every project error saying "fix your input" is a
#: ValueError: SettingsError, DataError, CheckpointError, AudioError, ...).
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)

Command = Callable[[argparse.Namespace], int]
_T = TypeVar("_T")

#: Command modules inside this package, imported only when the CLI runs.
_BUILTIN = ("score", "train", "eval", "refit", "embed", "data")


def fail(args: argparse.Namespace, message: object, code: int = EXIT_USAGE) -> int:
    """Print ``apex <command>: error: <message>`` on stderr; return ``code``."""
    words = [getattr(args, "command", None), getattr(args, "subcommand", None)]
    print(f"{' '.join(['apex', *filter(None, words)])}: error: {message}", file=sys.stderr)
    return code


def guarded(command: Command, errors: tuple[type[BaseException], ...] = ()) -> Command:
    """Wrap a command so :data:`INPUT_ERRORS` (and ``errors``) become one line and exit 2."""
    expected = INPUT_ERRORS + tuple(errors)

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args) or EXIT_OK)
        except expected as err:
            return fail(args, err, EXIT_USAGE)

    return run


def dataclass_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    overrides: Mapping[str, Any] | None = None,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    help: Mapping[str, str] | None = None,
) -> None:
    """Add one ``--field-name`` flag per field of dataclass ``cls``, typed and defaulted like it
    (``overrides``: other defaults); booleans get ``--x/--no-x``; fields in ``skip`` or outside
    ``only`` get none."""
    overrides = dict(overrides or {})
    help = dict(help or {})
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init or (only is not None and field.name not in only):
            continue
        if field.name in overrides:
            default = overrides[field.name]
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None if field.default is dataclasses.MISSING else field.default
        flag = "--" + field.name.replace("_", "-")
        text = help.get(field.name, "")
        text = f"{text} (default {default})" if text else f"default {default}"
        if isinstance(default, bool):
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help.get(field.name),
            )
        elif isinstance(default, (tuple, list)):
            kind = type(default[0]) if default else str
            parser.add_argument(flag, type=kind, nargs="*", default=default, help=text)
        else:
            hint = hints.get(field.name)  # a None default: the annotation's int or float, else str
            scalar = next((a for a in typing.get_args(hint) or (hint,) if a in (int, float)), str)
            kind = scalar if default is None else type(default)
            parser.add_argument(
                flag, type=kind, default=default, choices=(choices or {}).get(field.name), help=text
            )


def from_args(cls: type[_T], args: argparse.Namespace, **given: Any) -> _T:
    """Build dataclass ``cls`` from the flags :func:`dataclass_flags` added, plus ``given``."""
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init and f.name not in given and hasattr(args, f.name)
    }
    values.update(given)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def build_parser() -> argparse.ArgumentParser:
    """Return the full ``apex`` parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="apex", description="APEX Arena: score songs, train and refit heads, manage votes."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _BUILTIN:
        importlib.import_module(f"apex.commands.{name}").register(sub)
    for entry in importlib.metadata.entry_points(group="apex.cli"):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args) or EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())

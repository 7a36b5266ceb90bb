"""The ``apex`` command line: a thin dispatcher over subcommands defined next to their code.

Each command module exposes ``register(subparsers) -> None`` that adds one subcommand whose
parser sets ``func`` (a callable taking the parsed namespace and returning an exit code). Modules
outside ``apex`` (for example ``annotation.cli`` for ``apex votes``) join through the ``apex.cli``
entry-point group, so ``apex`` never imports them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

#: Command modules inside this package, imported only when the CLI runs.
_BUILTIN = (
    "apex.commands.score",
    "apex.commands.train",
    "apex.commands.embed",
    "apex.commands.data",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the full ``apex`` parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="apex", description="APEX Arena: score songs, train and refit heads, manage votes."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registrars = []
    for name in _BUILTIN:
        try:
            registrars.append(importlib.import_module(name).register)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real import error inside the module: surface it
                raise
    for entry in importlib.metadata.entry_points(group="apex.cli"):
        try:
            registrars.append(entry.load())
        except ModuleNotFoundError:
            continue  # the providing package is not installed in this environment
    for register in registrars:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Subcommands of the ``apex`` CLI, one module each (see :mod:`apex.cli`)."""

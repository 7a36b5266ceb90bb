"""Helpers of the training commands: the data flags, reading vote and rating files (``apex``
never reads the vote store itself)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apex.files import write_text_atomic

if TYPE_CHECKING:
    import pandas as pd


def data_flags(parser: argparse.ArgumentParser) -> None:
    """``--data`` (required), ``--votes`` and ``--ratings``: the inputs of ``train``/``refit``."""
    add = parser.add_argument
    add("--data", type=Path, required=True, help="engagement shards (file or folder)")
    add("--votes", type=Path, default=None, help="votes: Parquet file/folder or CSV")
    add("--ratings", type=Path, default=None, help="human 1-5 ratings (clip_id, axes)")


def read_table(path: Path | None) -> pd.DataFrame | None:
    """Votes or ratings from a CSV or Parquet file, or every Parquet file under a folder (None if no
    path); raises FileNotFoundError for a folder without Parquet files."""
    if path is None:
        return None
    import pandas as pd

    if path.suffix == ".csv":
        return pd.read_csv(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(
            f"no Parquet files under {path}; export votes with `apex votes export`"
        )
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def write_json(path: Path | None, report: Any) -> None:
    """Write ``report`` as indented JSON to ``path`` (atomically) when a path is given."""
    if path is None:
        return
    write_text_atomic(path, json.dumps(report, indent=2, default=float))
    print(f"report written to {path}")

"""SongEval (ASLP-lab/SongEval): expert 1-5 ratings as aesthetic targets and as a test set.

**Licence: CC BY-NC-SA 4.0 -- non-commercial use only**; every manifest row says so. Layout:
``mp3/<song>.mp3`` and ``metadata.jsonl`` (``file_name`` relative to the root) with five ratings
per song, as columns or nested (``aesthetic_scores.*``), each a number or per-rater list."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apex.tasks import AESTHETICS

HUB_ID = "ASLP-lab/SongEval"
LICENSE = "CC BY-NC-SA 4.0 (SongEval; non-commercial use only)"
PLATFORM = "songeval"


class SongEvalError(ValueError):
    """The folder is not SongEval's layout; the message lists what was found."""


@dataclass
class SongEvalSet:
    """SongEval read from disk. ``songs``: ``clip_id``, ``file_name``, the five
    :data:`AESTHETICS` (1-5 means), ``has_audio``, ``split`` (stable hash split, 10 % val, 10 %
    test); ``skipped``: ``(row or file, reason)`` of every record left out or without audio."""

    root: Path
    songs: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _axis_columns(columns: list[str]) -> dict[str, str]:
    """``axis -> column`` by keyword, any case (``aesthetic_scores.Overall Coherence``)."""
    found: dict[str, str] = {}
    for column in columns:
        name = column.rsplit(".", 1)[-1].lower()
        for axis in AESTHETICS:
            if axis in name and axis not in found:
                found[axis] = column
    return found


def _mean_rating(value: Any) -> float:
    values = value if isinstance(value, list | tuple) else [value]
    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if numbers.isna().any() or numbers.empty:
        raise ValueError(f"rating {value!r} is not a number")
    mean = float(numbers.mean())
    if not 1.0 <= mean <= 5.0:
        raise ValueError(f"rating {mean} is outside 1-5")
    return mean


def read_songeval(root: str | Path) -> SongEvalSet:
    """Read ``metadata.jsonl`` (or ``metadata.csv``) and check each song's audio;
    :class:`SongEvalError`: no metadata file, or no column for one of the five dimensions."""
    from apex.sources.engagement import assign_split

    root = Path(root).expanduser().resolve()
    if (root / "metadata.jsonl").is_file():
        lines = (root / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        records, skipped = [], []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                skipped.append((f"metadata.jsonl:{number}", f"invalid JSON: {exc}"))
        frame = pd.json_normalize(records)
    elif (root / "metadata.csv").is_file():
        frame, skipped = pd.read_csv(root / "metadata.csv"), []
    else:
        raise SongEvalError(
            f"{root} has no metadata.jsonl or metadata.csv; download {HUB_ID} (dataset) or point "
            "at the folder that holds it."
        )
    axes = _axis_columns(list(frame.columns))
    name_col = next((c for c in ("file_name", "audio", "path") if c in frame.columns), None)
    if len(axes) < len(AESTHETICS) or name_col is None:
        missing = [a for a in AESTHETICS if a not in axes] + ([] if name_col else ["file_name"])
        raise SongEvalError(
            f"unknown SongEval layout: no column for {missing}; found columns "
            f"{sorted(frame.columns)}."
        )
    rows = []
    for _, record in frame.iterrows():
        name = str(record[name_col])
        try:
            ratings = {axis: _mean_rating(record[col]) for axis, col in axes.items()}
        except ValueError as exc:
            skipped.append((name, str(exc)))
            continue
        row = {"clip_id": Path(name).stem, "file_name": name, **ratings}
        rows.append(row | {"has_audio": (root / name).is_file()})
    songs = pd.DataFrame(rows, columns=["clip_id", "file_name", *AESTHETICS, "has_audio"])
    songs["split"] = assign_split(songs["clip_id"])
    skipped += [(n, "audio file not on disk") for n in songs.loc[~songs["has_audio"], "file_name"]]
    return SongEvalSet(root=root, songs=songs, skipped=skipped)


def write_manifest(data: SongEvalSet, path: str | Path) -> Path:
    """An ``apex embed`` manifest of the songs with audio: ``id``, ``audio``, ``platform``,
    ``split``, the five targets and ``license`` (kept in the shards' ``extra`` column)."""
    from apex.sources.download import write_jsonl

    rows = [
        {
            "id": f"{PLATFORM}:{row['clip_id']}",
            "audio": str(data.root / row["file_name"]),
            "platform": PLATFORM,
            "split": row["split"],
            **{a: row[a] for a in AESTHETICS},
            "license": LICENSE,
        }
        for row in data.songs[data.songs["has_audio"]].to_dict("records")
    ]
    return write_jsonl(Path(path), rows)


def aesthetic_metrics(
    predictions: pd.DataFrame, truth: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """The challenge's ``{axis: {"lcc", "srcc", "ktau", "n"}}`` on the clips (index) of both
    frames (a 1-5 column per aesthetic); NaN where fewer than 3 songs or one side is constant."""
    from scipy import stats

    out: dict[str, dict[str, float]] = {}
    for axis in AESTHETICS:
        if axis not in predictions or axis not in truth:
            continue
        joined = pd.concat([predictions[axis], truth[axis]], axis=1, join="inner").dropna()
        pred, true = joined.iloc[:, 0].to_numpy(float), joined.iloc[:, 1].to_numpy(float)
        usable = len(joined) >= 3 and np.ptp(pred) > 0 and np.ptp(true) > 0
        nan = float("nan")
        out[axis] = {
            "lcc": float(stats.pearsonr(pred, true)[0]) if usable else nan,
            "srcc": float(stats.spearmanr(pred, true)[0]) if usable else nan,
            "ktau": float(stats.kendalltau(pred, true)[0]) if usable else nan,
            "n": len(joined),
        }
    return out

"""Manifests: one work item per song, from a JSONL or CSV file or a Hub dataset id. Columns: the
unique id (:data:`ID_COLUMNS`, first found), audio (:data:`AUDIO_COLUMNS`: a path relative to the
manifest or an ``http(s)://`` URL), ``platform``, ``split``, numeric :data:`TARGET_COLUMNS` (empty:
unknown); any other column goes into the item's JSON ``extra``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from apex.tasks import SCORE_NAMES

ID_COLUMNS: tuple[str, ...] = ("id", "clip_id", "song_id")
AUDIO_COLUMNS: tuple[str, ...] = ("audio", "path", "audio_path", "file_name", "url")
#: Numeric columns kept as float64 columns in the shards (the training targets).
TARGET_COLUMNS: tuple[str, ...] = ("streams", "likes", *SCORE_NAMES)
DEFAULT_PLATFORM = "unknown"
DEFAULT_SPLIT = "pool"  # apex.training.data's split for songs without training targets
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ManifestError(ValueError):
    """The manifest cannot be used; the message says what is wrong and how to fix it."""


def read_manifest(spec: str | Path) -> list[dict[str, Any]]:
    """Work items of a ``.jsonl``/``.json``/``.csv`` file or Hub dataset id, in manifest order:
    ``{"id", "audio" (path or URL), "platform", "split", "extra" (JSON): str, <target>: float |
    None}`` for every name of :data:`TARGET_COLUMNS`. :class:`ManifestError`: unreadable file, no
    id or audio column, empty or duplicate ids, or a Hub dataset that cannot be loaded (offline)."""
    path = Path(spec)
    if path.is_file():
        frame, base = _read_file(path), path.resolve().parent
    elif isinstance(spec, str) and _HUB_ID.match(spec) and not path.exists():
        frame, base = _read_hub(spec), None
    else:
        raise ManifestError(
            f"manifest {spec}: no such file, and not a Hub dataset id (owner/name); pass a "
            ".jsonl or .csv file with id and audio columns."
        )
    return _items(frame, base, str(spec))


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            return pd.read_json(path, lines=suffix != ".json", dtype=False)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str)
    except ValueError as err:
        raise ManifestError(f"manifest {path}: cannot be parsed ({err}).") from err
    raise ManifestError(
        f"manifest {path}: unknown format {suffix!r}; use .jsonl (one JSON object a line) or .csv."
    )


def _read_hub(dataset_id: str) -> pd.DataFrame:
    """Rows of a Hub dataset's ``train`` split; audio comes as a path or URL per row."""
    import datasets

    from apex.hub_files import hub_errors

    try:
        table = datasets.load_dataset(dataset_id, split="train")
        if "audio" in table.column_names:
            # Keep paths, not decoded arrays: decoding happens in the workers, like for files.
            table = table.cast_column("audio", datasets.Audio(decode=False))
        frame = table.to_pandas()
    except hub_errors() as err:  # offline, no such repo, gated: one piece of advice
        raise ManifestError(
            f"Hub dataset {dataset_id!r} cannot be loaded ({type(err).__name__}: {err}). Offline "
            "or unknown: download it first (`huggingface-cli download --repo-type dataset "
            f"{dataset_id}`) or write a local JSONL/CSV manifest of ids and audio paths."
        ) from err
    if "audio" in frame:
        frame["audio"] = [a.get("path") if isinstance(a, dict) else a for a in frame["audio"]]
    return frame


def _items(frame: pd.DataFrame, base: Path | None, name: str) -> list[dict[str, Any]]:
    id_col = next((c for c in ID_COLUMNS if c in frame), None)
    audio_cols = [c for c in AUDIO_COLUMNS if c in frame]
    if id_col is None or not audio_cols:
        raise ManifestError(
            f"manifest {name}: needs an id column ({' / '.join(ID_COLUMNS)}) and an audio column "
            f"({' / '.join(AUDIO_COLUMNS)}); found {list(frame.columns)}."
        )
    ids = frame[id_col].map(_text)
    if (ids == "").any():
        raise ManifestError(f"manifest {name}: row {int((ids == '').idxmax()) + 1} has no id.")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise ManifestError(
            f"manifest {name}: id {duplicated.iloc[0]!r} appears more than once; ids must be "
            "unique (they key resumption and the training data)."
        )
    used = {id_col, *audio_cols, "platform", "split", *TARGET_COLUMNS}
    extra_cols = [c for c in frame.columns if c not in used and c not in ID_COLUMNS]
    items = []
    for n, row in enumerate(frame.to_dict("records")):
        item: dict[str, Any] = {
            "id": ids.iloc[n],
            # Per row, the first audio column with a value (a manifest may mix paths and URLs).
            "audio": _resolve(next(filter(None, (_text(row[c]) for c in audio_cols)), ""), base),
            "platform": _text(row.get("platform")) or DEFAULT_PLATFORM,
            "split": _text(row.get("split")) or DEFAULT_SPLIT,
            "extra": json.dumps({c: _plain(row[c]) for c in extra_cols}, sort_keys=True),
        }
        for target in TARGET_COLUMNS:
            item[target] = _number(row.get(target), target, item["id"], name)
        items.append(item)
    return items


def _resolve(audio: str, base: Path | None) -> str:
    if not audio or "://" in audio or base is None or Path(audio).is_absolute():
        return audio
    return str(base / audio)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (NaN -> None; numpy scalars -> Python)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _number(value: Any, column: str, item_id: str, name: str) -> float | None:
    text = _text(value)
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ManifestError(
            f"manifest {name}: {column}={text!r} for id {item_id!r} is not a number; leave it "
            "empty when unknown."
        ) from None

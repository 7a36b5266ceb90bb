"""Engagement listings (Suno/Udio metadata dumps) -> 0-100 targets and a download list.

A listing is a JSONL/JSON/CSV/Parquet file with one song per row. Nested objects are flattened
with dots (Suno's API nests ``metadata.duration`` and ``metadata.tags``). A :class:`ColumnMap`
per known source says which column holds each field; the first candidate present wins:

=============  ===================================  ==========================================
field          suno (public dumps, e.g. nyuuzyou/    udio (field names of its web API, not yet
               suno; CC0 metadata)                   checked against a public dump)
=============  ===================================  ==========================================
id             ``id``                               ``id``, ``song_id``
url            ``audio_url``                        ``song_path``, ``audio_url``
streams        ``play_count``                       ``plays``, ``play_count``
likes          ``upvote_count``                     ``likes``, ``like_count``
model_version  ``major_model_version``,             ``model``, ``model_version``
               ``model_name``
tags           ``metadata.tags``, ``tags``          ``tags``
duration_s     ``metadata.duration``, ``duration``  ``duration``
=============  ===================================  ==========================================

A listing that fits no map fails with the columns it has and what each map looks for. Rows without
an id or URL, with a duplicate id, or with counts that are not non-negative numbers are skipped and
reported; every other row is kept. Raw counts become the reference's 0-100 scores with
:class:`apex.training.data.TargetTransform` (percentile on the training split, then a power).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from apex.files import sha256_text
from apex.tasks import ENGAGEMENT_POWER

FIELDS: tuple[str, ...] = ("id", "url", "streams", "likes", "model_version", "tags", "duration_s")
_REQUIRED: tuple[str, ...] = ("id", "url", "streams", "likes")


class ListingError(ValueError):
    """The listing cannot be read or mapped; the message lists what was found."""


@dataclass(frozen=True)
class ColumnMap:
    """Candidate column names per field for one source (first present wins)."""

    platform: str
    columns: dict[str, tuple[str, ...]]
    verified: bool

    def resolve(self, available: set[str]) -> dict[str, str]:
        """``field -> column`` for every field with a candidate in ``available``."""
        found = {}
        for name, candidates in self.columns.items():
            hit = next((c for c in candidates if c in available), None)
            if hit is not None:
                found[name] = hit
        return found


COLUMN_MAPS: dict[str, ColumnMap] = {
    "suno": ColumnMap(
        "suno",
        {
            "id": ("id",),
            "url": ("audio_url",),
            "streams": ("play_count",),
            "likes": ("upvote_count",),
            "model_version": ("major_model_version", "model_name"),
            "tags": ("metadata.tags", "tags"),
            "duration_s": ("metadata.duration", "duration"),
        },
        verified=True,
    ),
    "udio": ColumnMap(
        "udio",
        {
            "id": ("id", "song_id"),
            "url": ("song_path", "audio_url"),
            "streams": ("plays", "play_count"),
            "likes": ("likes", "like_count"),
            "model_version": ("model", "model_version"),
            "tags": ("tags",),
            "duration_s": ("duration",),
        },
        verified=False,
    ),
}


def read_listing(path: str | Path) -> pd.DataFrame:
    """Read a listing file; nested JSON objects become dotted columns.

    Raises:
        ListingError: unknown extension, compressed with zstd (decompress first), or unreadable.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".zst" else path.suffix
    try:
        if suffix in (".jsonl", ".json"):
            text = path.read_text(encoding="utf-8")
            if suffix == ".json" and text.lstrip().startswith("["):
                records = json.loads(text)
            else:
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
            return pd.json_normalize(records)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ListingError(f"cannot read {path}: {exc}") from exc
    if path.suffix == ".zst":
        raise ListingError(f"{path} is zstd-compressed; run `zstd -d {path}` and pass the result.")
    raise ListingError(f"{path}: unknown listing format; use .jsonl, .json, .csv or .parquet")


def detect(frame: pd.DataFrame, source: str | None = None) -> ColumnMap:
    """The column map that fits ``frame`` (``source`` forces one).

    Raises:
        ListingError: no map (or not the forced one) finds id, url, streams and likes; the message
            lists the columns found and what each map looks for.
    """
    available = set(frame.columns)
    maps = [COLUMN_MAPS[source]] if source in COLUMN_MAPS else list(COLUMN_MAPS.values())
    if source is not None and source not in COLUMN_MAPS:
        raise ListingError(f"unknown source {source!r}; known: {', '.join(COLUMN_MAPS)}")
    for cmap in maps:
        if all(f in cmap.resolve(available) for f in _REQUIRED):
            return cmap
    wanted = "; ".join(
        f"{m.platform}: " + ", ".join(f"{f}={'|'.join(m.columns[f])}" for f in _REQUIRED)
        for m in maps
    )
    raise ListingError(
        f"unknown listing layout: found columns {sorted(available)}; expected ({wanted}). "
        "Rename the columns or add a ColumnMap for this source."
    )


def normalise(frame: pd.DataFrame, source: str | None = None) -> tuple[pd.DataFrame, list]:
    """Map a listing onto :data:`FIELDS` plus ``platform``.

    Returns:
        The usable rows (``streams``/``likes`` float64) and ``(row number, reason)`` of the rest.
    """
    cmap = detect(frame, source)
    columns = cmap.resolve(set(frame.columns))
    out = pd.DataFrame({f: frame[c] for f, c in columns.items()})
    for name in FIELDS:
        if name not in out:
            out[name] = None
    out = out[list(FIELDS)].copy()
    out.insert(2, "platform", cmap.platform)
    counts = {k: pd.to_numeric(out[k], errors="coerce") for k in ("streams", "likes")}
    out["duration_s"] = pd.to_numeric(out["duration_s"], errors="coerce")
    reasons = pd.Series("", index=out.index)
    for key, values in counts.items():
        out[key] = values.astype(np.float64)
        reasons = reasons.where(~(values.isna() | (values < 0)), f"{key} is not a count >= 0")
    out["id"] = out["id"].astype(object).where(out["id"].notna(), "").astype(str).str.strip()
    reasons = reasons.where(out["url"].astype(str).str.startswith("http"), "no http(s) audio URL")
    reasons = reasons.where(out["id"] != "", "no id")
    reasons = reasons.where(~(out["id"].duplicated() & (out["id"] != "")), "duplicate id")
    skipped = [(int(i), why) for i, why in reasons.items() if why]
    return out[reasons == ""].reset_index(drop=True), skipped


def assign_split(ids: pd.Series, *, val: float = 0.1, test: float = 0.1) -> pd.Series:
    """``train``/``val``/``test`` from a hash of each id: stable when the listing grows."""
    buckets = ids.map(lambda i: int(sha256_text(str(i))[:8], 16) % 1000)
    inner = np.where(buckets < (test + val) * 1000, "val", "train")
    split = np.where(buckets < test * 1000, "test", inner)
    return pd.Series(split, index=ids.index)


def with_targets(listing: pd.DataFrame, *, power: float = ENGAGEMENT_POWER) -> pd.DataFrame:
    """Add ``split`` and the 0-100 ``score_streams``/``score_likes`` (fitted on ``train`` only)."""
    from apex.training.data import TargetTransform

    out = listing.copy()
    out["split"] = assign_split(out["id"])
    transform = TargetTransform(power=power).fit(out[out["split"] == "train"])
    return transform.transform(out)


def download_items(listing: pd.DataFrame, *, folder: str = "audio") -> list:
    """One :class:`apex.sources.download.DownloadItem` per row, its targets carried as metadata."""
    from apex.sources.download import DownloadItem

    items = []
    for row in listing.to_dict("records"):
        suffix = Path(str(row["url"]).split("?")[0]).suffix or ".mp3"
        meta = {k: v for k, v in row.items() if k not in ("id", "url") and not _missing(v)}
        safe = re.sub(r"[^\w.-]", "_", str(row["id"]))  # ids become file names
        items.append(
            DownloadItem(str(row["id"]), str(row["url"]), f"{folder}/{safe}{suffix}", meta=meta)
        )
    return items


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))

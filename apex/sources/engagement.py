"""Engagement listings (Suno/Udio metadata dumps: JSONL/JSON/CSV/Parquet, a song a row) -> 0-100
targets and a download list. Suno's column map: public dumps (e.g. nyuuzyou/suno); Udio's: the song
objects of ``https://www.udio.com/api/songs?songIds=...`` as yt-dlp reads them (no model version).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from apex.files import sha256_text
from apex.tasks import ENGAGEMENT_POWER

FIELDS: tuple[str, ...] = ("id", "url", "streams", "likes", "model_version", "tags", "duration_s")
_REQUIRED: tuple[str, ...] = ("id", "url", "streams", "likes")
#: Per platform, the candidate columns of each field in :data:`FIELDS` (first present wins).
COLUMN_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "suno": {
        "id": ("id",),
        "url": ("audio_url",),
        "streams": ("play_count",),
        "likes": ("upvote_count",),
        "model_version": ("major_model_version", "model_name"),
        "tags": ("metadata.tags", "tags"),
        "duration_s": ("metadata.duration", "duration"),
    },
    "udio": {
        "id": ("id",),
        "url": ("song_path",),
        "streams": ("plays",),
        "likes": ("likes",),
        "tags": ("tags",),
        "duration_s": ("duration",),
    },
}


class ListingError(ValueError):
    """The listing cannot be read or mapped; the message lists what was found."""


def _columns(platform: str, available: set[str]) -> dict[str, str]:
    """``field -> column`` for every field of ``platform`` with a candidate in ``available``."""
    return {
        name: next(c for c in candidates if c in available)
        for name, candidates in COLUMN_MAPS[platform].items()
        if any(c in available for c in candidates)
    }


def read_listing(path: str | Path) -> pd.DataFrame:
    """Read a listing file; nested JSON objects become dotted columns (``metadata.duration``).
    :class:`ListingError`: unknown extension, zstd-compressed (decompress first), unreadable."""
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


def detect(frame: pd.DataFrame, platform: str | None = None) -> str:
    """The platform whose column map fits ``frame`` (``platform`` forces one); :class:`ListingError`
    (the columns found, what each map looks for) when none finds id, url, streams and likes."""
    available = set(frame.columns)
    if platform is not None and platform not in COLUMN_MAPS:
        raise ListingError(f"unknown platform {platform!r}; known: {', '.join(COLUMN_MAPS)}")
    platforms = [platform] if platform else list(COLUMN_MAPS)
    for name in platforms:
        if all(f in _columns(name, available) for f in _REQUIRED):
            return name
    wanted = "; ".join(
        f"{p}: " + ", ".join(f"{f}={'|'.join(COLUMN_MAPS[p][f])}" for f in _REQUIRED)
        for p in platforms
    )
    raise ListingError(
        f"unknown listing layout: found columns {sorted(available)}; expected ({wanted}). "
        "Rename the columns or add a column map for this platform."
    )


def normalise(frame: pd.DataFrame, platform: str | None = None) -> tuple[pd.DataFrame, list]:
    """Map a listing onto :data:`FIELDS` plus ``platform`` (detected unless given): the usable rows
    (``streams``/``likes`` float64) and ``(row number, reason)`` of the rest (no id or URL, a
    duplicate id, counts that are not numbers >= 0)."""
    platform = detect(frame, platform)
    columns = _columns(platform, set(frame.columns))
    out = pd.DataFrame({f: frame[columns[f]] if f in columns else None for f in FIELDS})
    out.insert(2, "platform", platform)
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


def assign_split(ids: pd.Series) -> pd.Series:
    """``train``/``val``/``test`` (80/10/10 %) from a hash of each id: stable as a listing grows."""
    buckets = ids.map(lambda i: int(sha256_text(str(i))[:8], 16) % 1000)
    split = np.select([buckets < 100, buckets < 200], ["test", "val"], "train")
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

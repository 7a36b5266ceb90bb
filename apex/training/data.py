"""Engagement data: the Parquet shard format, the target transform, the training arrays. A shard
has one row per song: ``id`` (unique across shards; votes refer to it), ``embedding``
(float32, flattened from ``shape``: ``[S, L, D]`` per segment or ``[L, D]``), ``duration_s``,
``encoder_id`` (one per data set), ``platform`` (``suno``, ``demo``...), ``split`` (:data:`SPLITS`;
``pool`` rows have no targets), then nullable float64 columns: the raw counts ``streams`` and
``likes``, and the targets :data:`SCORE_NAMES` (engagement 0-100, used when its raw count is
missing; the five aesthetics 1-5)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from apex.files import atomic_path
from apex.tasks import AESTHETICS, ENGAGEMENT_POWER, SCORE_NAMES

#: Raw engagement count column behind each 0-100 engagement score.
RAW_COLUMNS: dict[str, str] = {"score_streams": "streams", "score_likes": "likes"}
SPLITS: tuple[str, ...] = ("train", "val", "test", "pool")
#: Numeric optional columns of a shard, in order.
_TARGET_COLUMNS: tuple[str, ...] = ("streams", "likes", *SCORE_NAMES)


class DataError(ValueError):
    """Engagement data or votes are malformed; the message says what and how to fix it."""


# ---------------------------------------------------------------------------- target transform
@dataclass
class TargetTransform:
    """Raw counts -> 0-100: ``score = 100 * F(x) ** power``, stored with the model. ``F`` is the
    training split's empirical CDF of the count per platform (counts of different platforms are
    not comparable; ties share their mid-rank). ``quantiles``: ``{platform: {count_column: sorted
    training values}}``."""

    power: float = ENGAGEMENT_POWER
    quantiles: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> TargetTransform:
        """Fit on the rows of ``frame`` (pass the training split only); returns ``self``."""
        self.quantiles = {}
        for platform, rows in frame.groupby("platform"):
            counts = {raw: rows[raw].dropna() for raw in RAW_COLUMNS.values() if raw in rows}
            self.quantiles[str(platform)] = {
                raw: np.sort(c.to_numpy(np.float64)).tolist() for raw, c in counts.items() if len(c)
            }
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with ``score_*`` from the raw counts where fitted (else kept as given)."""
        out = frame.copy()
        for score, raw in RAW_COLUMNS.items():
            if raw not in out:
                continue
            if score not in out:
                out[score] = np.nan
            for platform, idx in out.groupby("platform").groups.items():
                ref = self.quantiles.get(str(platform), {}).get(raw)
                if ref:
                    counts = out.loc[idx, raw].to_numpy(dtype=np.float64)
                    scored = self.score(counts, np.asarray(ref))
                    out.loc[idx, score] = np.where(np.isnan(counts), out.loc[idx, score], scored)
        return out

    def score(self, counts: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``[N]`` raw counts -> ``[N]`` scores on 0-100 against sorted training counts."""
        below = np.searchsorted(reference, counts, side="left")
        upto = np.searchsorted(reference, counts, side="right")
        pct = (below + upto) / (2.0 * len(reference))
        return 100.0 * np.clip(pct, 0.0, 1.0) ** self.power

    def to_dict(self) -> dict:
        return {"power": self.power, "quantiles": self.quantiles}

    @classmethod
    def from_dict(cls, data: dict) -> TargetTransform:
        return cls(power=float(data["power"]), quantiles=dict(data.get("quantiles", {})))


# ---------------------------------------------------------------------------- shards
def write_shard(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write one shard (atomically) from a frame of the module's columns, ``embedding`` as
    ``[S, L, D]`` or ``[L, D]`` arrays. Raises :class:`DataError` on missing columns or splits."""
    missing = {"id", "embedding", "encoder_id", "split"} - set(frame.columns)
    if missing:
        raise DataError(f"shard frame lacks columns {sorted(missing)}; see apex.training.data")
    bad = set(frame["split"]) - set(SPLITS)
    if bad:
        raise DataError(f"unknown split values {sorted(bad)}; use one of {SPLITS}")
    arrays = [np.asarray(e, dtype=np.float32) for e in frame["embedding"]]
    platform = frame["platform"] if "platform" in frame else ["unknown"] * len(frame)
    columns = {
        "id": _text(frame["id"]),
        "embedding": pa.array([a.ravel() for a in arrays], pa.list_(pa.float32())),
        "shape": pa.array([list(a.shape) for a in arrays], pa.list_(pa.int32())),
        "duration_s": _floats(frame, "duration_s"),
        "encoder_id": _text(frame["encoder_id"]),
        "platform": _text(platform),
        "split": _text(frame["split"]),
    }
    columns.update({name: _floats(frame, name) for name in _TARGET_COLUMNS})
    with atomic_path(path) as tmp:  # readers never see half a shard
        pq.write_table(pa.table(columns), tmp)
    return Path(path)


def _text(values) -> pa.Array:
    return pa.array([str(v) for v in values], pa.string())


def _floats(frame: pd.DataFrame, name: str) -> pa.Array:
    """A nullable float64 column: a missing column, NaN or a non-number is null."""
    if name not in frame:
        return pa.nulls(len(frame), pa.float64())
    return pa.array(pd.to_numeric(frame[name], errors="coerce"), pa.float64())


def read_shards(path: str | Path) -> pd.DataFrame:
    """Every ``*.parquet`` under ``path`` (file or folder, recursively, sorted by path);
    ``embedding`` as float32 arrays in their stored shape."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise DataError(f"no Parquet shards under {path}; write them with write_shard()")
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    frame["embedding"] = [
        np.asarray(e, dtype=np.float32).reshape(tuple(s))
        for e, s in zip(frame["embedding"], frame["shape"], strict=True)
    ]
    dup = frame.loc[frame["id"].duplicated(), "id"]
    if len(dup):
        raise DataError(f"song id {dup.iloc[0]!r} appears twice across shards; ids must be unique")
    return frame.drop(columns=["shape"])


# ---------------------------------------------------------------------------- tensors
@dataclass
class EngagementData:
    """Songs as arrays: ``x`` ``[M, L, D]`` float32 training rows, one per song (``mode="song"``,
    M = N) or per segment, ``row_song`` ``[M]`` each row's song; ``song_x`` ``[N, L, D]`` segment
    means (battles, eval); ``targets`` ``[N, 7]`` float32 in :data:`SCORE_NAMES` order (NaN:
    unknown); ``ids``, ``split``, ``platform``, ``duration_s`` (seconds) ``[N]``; the one
    ``encoder_id``; ``fingerprint``: sha256 over ids, shapes and targets."""

    ids: np.ndarray
    x: np.ndarray
    row_song: np.ndarray
    song_x: np.ndarray
    targets: np.ndarray
    split: np.ndarray
    platform: np.ndarray
    duration_s: np.ndarray
    encoder_id: str
    fingerprint: str

    def index_of(self) -> dict[str, int]:
        """Song id -> row of ``song_x``."""
        return {str(i): n for n, i in enumerate(self.ids)}

    def songs_in(self, *splits: str) -> np.ndarray:
        return np.flatnonzero(np.isin(self.split, splits))


def to_arrays(frame: pd.DataFrame, *, mode: str = "song") -> EngagementData:
    """A frame of :func:`read_shards` (targets transformed) as arrays. Raises :class:`DataError`
    on mixed encoders or embedding shapes, or an unknown ``mode``."""
    if mode not in ("song", "segment"):
        raise DataError(f"mode must be 'song' or 'segment', got {mode!r}")
    encoders = sorted(set(frame["encoder_id"]))
    if len(encoders) != 1:
        raise DataError(f"one encoder per data set, found {encoders}; re-embed or split the data")
    per_song = [e if e.ndim == 3 else e[None] for e in frame["embedding"]]  # [S, L, D]
    widths = {e.shape[1:] for e in per_song}
    if len(widths) != 1:
        raise DataError(f"embeddings have different [L, D] shapes {sorted(widths)}")
    song_x = np.stack([e.mean(axis=0) for e in per_song]).astype(np.float32)
    if mode == "segment":
        x = np.concatenate(per_song).astype(np.float32)
        row_song = np.repeat(np.arange(len(per_song)), [len(e) for e in per_song])
    else:
        x, row_song = song_x, np.arange(len(per_song))
    targets = frame.reindex(columns=list(SCORE_NAMES)).apply(pd.to_numeric, errors="coerce")
    targets = targets.to_numpy(np.float32)
    return EngagementData(
        ids=frame["id"].astype(str).to_numpy(),
        x=x,
        row_song=row_song,
        song_x=song_x,
        targets=targets,
        split=frame["split"].astype(str).to_numpy(),
        platform=frame["platform"].astype(str).to_numpy(),
        duration_s=pd.to_numeric(frame["duration_s"], errors="coerce").to_numpy(np.float64),
        encoder_id=encoders[0],
        fingerprint=fingerprint(frame["id"], song_x.shape, targets),
    )


def fingerprint(ids: pd.Series | np.ndarray, shape: tuple[int, ...], targets: np.ndarray) -> str:
    """sha256 hex over ids, embedding shape and targets: same data -> same fingerprint."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, ids)).encode())
    h.update(json.dumps(list(shape)).encode())
    h.update(np.nan_to_num(targets, nan=-1e9).astype(np.float32).tobytes())
    return h.hexdigest()


def apply_ratings(frame: pd.DataFrame, ratings: pd.DataFrame | None) -> pd.DataFrame:
    """Join human 1-5 ratings (``clip_id`` + aesthetics, averaged per clip) into ``frame``; a
    human mean replaces an existing target (people are the truth the aesthetic heads imitate)."""
    if ratings is None or len(ratings) == 0:
        return frame
    axes = [a for a in AESTHETICS if a in ratings]
    if "clip_id" not in ratings or not axes:
        raise DataError("ratings need a clip_id column and at least one aesthetic column")
    means = ratings.groupby("clip_id")[axes].mean()
    out = frame.copy()
    hit = out["id"].isin(means.index)
    for axis in axes:
        human = out.loc[hit, "id"].map(means[axis])
        if axis not in out:
            out[axis] = np.nan
        out.loc[hit, axis] = human.where(human.notna(), out.loc[hit, axis])
    return out


def load_engagement(
    engagement_path: str | Path,
    *,
    mode: str = "song",
    transform: TargetTransform | None = None,
    ratings: pd.DataFrame | None = None,
) -> tuple[EngagementData, TargetTransform]:
    """Read shards and :func:`assemble` them; pass a model's ``transform`` to evaluate it on its
    own target scale (None: fit one on ``train``)."""
    return assemble(read_shards(engagement_path), mode=mode, transform=transform, ratings=ratings)


def assemble(
    frame: pd.DataFrame | None,
    pool: pd.DataFrame | None = None,
    *,
    mode: str = "song",
    transform: TargetTransform | None = None,
    ratings: pd.DataFrame | None = None,
) -> tuple[EngagementData, TargetTransform]:
    """The arrays a refit trains on: engagement rows, targets transformed, human ratings joined,
    plus the arena clips ``frame`` lacks (same encoder) as split ``pool`` without targets. With
    no engagement rows the clips are the songs: a stable 20 % (by id hash) is ``test``, the
    rest ``train``. Raises :class:`DataError` when there is neither."""
    if frame is None or len(frame) == 0:
        if pool is None or len(pool) == 0:
            raise DataError("no engagement rows and no embedded arena clips: nothing to train on")
        held = [int(hashlib.sha256(str(i).encode()).hexdigest()[:8], 16) for i in pool["id"]]
        frame = pool.assign(split=np.where(np.array(held) < 0.2 * 16**8, "test", "train"))
    elif pool is not None and len(pool):
        keep = ~pool["id"].isin(frame["id"]) & pool["encoder_id"].isin(set(frame["encoder_id"]))
        rows = pool[keep].assign(split="pool")
        rows[[c for c in _TARGET_COLUMNS if c in rows]] = np.nan
        frame = pd.concat([frame, rows], ignore_index=True) if len(rows) else frame
    if transform is None:
        transform = TargetTransform().fit(frame[frame["split"] == "train"])
    frame = apply_ratings(transform.transform(frame), ratings)
    return to_arrays(frame, mode=mode), transform


def known_targets(
    outputs: Mapping[str, np.ndarray], targets: np.ndarray, *, min_known: int = 1
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, known [N] bool, target [K] float64)`` per score in ``outputs`` (``{score: [N]}``)
    with at least ``min_known`` known ``targets`` (``[N, 7]``, NaN = unknown)."""
    for i, name in enumerate(SCORE_NAMES):
        if name not in outputs:
            continue
        column = targets[:, i]
        known = ~np.isnan(column)
        if known.sum() >= min_known:
            yield name, known, column[known].astype(np.float64)

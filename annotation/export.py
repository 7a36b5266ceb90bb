"""Released vote columns (:data:`VOTE_COLUMNS`: only ever added, nullable) and append-only shards
``<out_dir>/votes/YYYY/MM/<from>-<to>.parquet`` (store row ids, the votes' UTC month; the largest
``to`` is the export state), written once without imported votes, and read back."""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from annotation.flags import FLAG_REASONS
from annotation.store import SOURCES, VoteRecord, VoteStore
from apex.files import atomic_path
from apex.tasks import (
    AESTHETICS,
    PREFERENCES,
    SCORE_DESCRIPTIONS,
    SCORE_NAMES,
    VOTE_SOURCE_DOCS,
)

SHARD_DIR = "votes"
#: The ``datasets`` config (in the card's YAML) that every shard under :data:`SHARD_DIR` belongs to.
CONFIG = "default"
_SHARD_NAME = re.compile(r"^(\d+)-(\d+)\.parquet$")
_ID_DIGITS = 12
_MAX_ROWS = 100_000
_LOCK_FILE = ".export.lock"
#: Arrow type of each code in the column table below.
_TYPES = {"str": pa.string(), "f64": pa.float64(), "i64": pa.int64(), "bool": pa.bool_()}

#: The released columns before APEX's and the voters' per-clip ones: ``name type description``,
#: a description continued on indented lines.
_BASE_COLUMNS = """
battle_uuid str Opaque battle id (one vote per battle).
vote_id str Unique id of the vote (imports are idempotent by it).
row_id i64 Position of the vote in the store that collected it; shards are ranges.
timestamp f64 When the vote was accepted, Unix seconds (UTC).
date str The same moment as ISO 8601 in UTC.
prompt str Text prompt of the clips ('p1 | p2' when the prompts differ).
is_instrumental bool Both clips are instrumental (no vocals).
user_pseudonym str Salted HMAC of the voter's IP (or session; of the Hugging Face account id when
    signed_in); not reversible.
session_pseudonym str Salted HMAC of the browser session.
system_a str System that generated clip A.
system_b str System that generated clip B.
clip_a str Pool id of clip A.
clip_b str Pool id of clip B.
audio_a str File of clip A, relative to the clip pool.
audio_b str File of clip B, relative to the clip pool.
preference str The vote: {preferences}.
total_listening_time_a f64 Listening to clip A credited by the server, seconds.
total_listening_time_b f64 Listening to clip B credited by the server, seconds.
listen_data_a str JSON list of [seconds played, server time] reports for clip A.
listen_data_b str JSON list of [seconds played, server time] reports for clip B.
feedback str Optional free-text feedback of the voter.
source str {sources}.
apex_model_version str APEX model that made the predictions ('<id>@<version>').
apex_p_a f64 APEX's probability that listeners prefer clip A (0-1).
loudness_a f64 Integrated loudness of clip A as generated (ITU-R BS.1770-4, LUFS), measured by
    the server before it was played.
loudness_b f64 Integrated loudness of clip B as generated (ITU-R BS.1770-4, LUFS), measured by
    the server before it was played.
loudness_matched bool True: both clips were played gain-matched to the arena's target loudness
    (-16 LUFS by default, true peak at most -1 dBTP, no clipping: a static gain per clip, lowered
    for very peaky clips); False: played as generated.
duration_a f64 Length of clip A, seconds.
duration_b f64 Length of clip B, seconds.
instrumental_a bool Clip A is instrumental (no vocals).
instrumental_b bool Clip B is instrumental (no vocals).
flags str Comma-separated reasons this vote may be unreliable, computed by the server when it
    was cast ('' for none): {flags}. Flagged votes are kept; boards leave them out by default.
signed_in bool The voter was signed in with a Hugging Face account; user_pseudonym is then a
    salted HMAC of the account id.
pool str The clip pool audio_a and audio_b are relative to, with its revision:
    'music-arena/music-arena-dataset@<revision>:<batch>' (Music Arena's public release),
    '<owner>/<name>@<revision>' (an audiofolder dataset on the Hub), 'demo:<seed>' (the synthetic
    demo corpus) or 'local:<folder>' (a folder of the deployment); null for votes from before it
    was recorded. The dataset card says how to fetch the audio of each.
"""


def _columns() -> list[tuple[str, pa.DataType, str]]:
    """``(name, Arrow type, description)`` of every released column, in release order."""
    sources = [VOTE_SOURCE_DOCS[source] for source in SOURCES]
    text = _BASE_COLUMNS.format(
        preferences=", ".join(PREFERENCES[:-1]) + " or " + PREFERENCES[-1],
        sources=", ".join(sources[:-1]) + " or " + sources[-1],
        flags=", ".join(FLAG_REASONS),
    )
    lines = re.sub(r"\n +", " ", text.strip("\n")).splitlines()  # join continued descriptions
    cols = [(name, _TYPES[code], doc) for name, code, doc in (ln.split(" ", 2) for ln in lines)]
    for side in ("a", "b"):
        for name in SCORE_NAMES:
            doc = f"APEX on clip {side.upper()}: {SCORE_DESCRIPTIONS[name]}"
            cols.append((f"apex_{side}_{name}", pa.float64(), doc))
        doc = f"APEX preference logit of clip {side.upper()}."
        cols.append((f"apex_{side}_preference", pa.float64(), doc))
    for side in ("a", "b"):
        for name in AESTHETICS:
            doc = f"Voter's optional 1-5 rating of clip {side.upper()}: {SCORE_DESCRIPTIONS[name]}"
            cols.append((f"rating_{side}_{name}", pa.int8(), doc))
    return cols


_COLUMNS = _columns()
#: Released column name -> description, in release order.
VOTE_COLUMNS: dict[str, str] = {name: doc for name, _, doc in _COLUMNS}
#: The Arrow schema of every shard.
SCHEMA = pa.schema([(name, kind) for name, kind, _ in _COLUMNS])
_APEX_KEYS = (*SCORE_NAMES, "preference")


class ExportError(ValueError):
    """Shards cannot be written or read; the message says what was wrong and what to do."""


def conform(table: pa.Table) -> pa.Table:
    """A shard's table in today's :data:`SCHEMA`, columns it predates added as nulls; raises
    :class:`ExportError` for a column of another type than released."""
    columns = []
    for field in SCHEMA:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        kind = table.schema.field(field.name).type
        if _family(kind) not in ("null", _family(field.type)):
            raise ExportError(
                f"column {field.name!r} is {kind} in a shard, {field.type} in the release; "
                "a changed type needs a new config, not a shard."
            )
        try:  # pandas writes large_string, and integers with nulls as floats
            columns.append(table[field.name].cast(field.type))
        except pa.ArrowInvalid as exc:
            raise ExportError(f"column {field.name!r} of a shard: {exc}") from exc
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _family(kind: pa.DataType) -> str:
    """The kind of values an Arrow type holds: types of one family cast into each other."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    return str(kind)  # "null", "bool", ...


def release_frame(votes: pd.DataFrame) -> pd.DataFrame:
    """Turn :meth:`VoteStore.votes_frame` output into the released columns (same rows)."""
    out = pd.DataFrame({name: votes[name] for name in VOTE_COLUMNS if name in votes.columns})
    moments = pd.to_datetime(votes["timestamp"], unit="s", utc=True)
    out["date"] = moments.map(lambda t: t.isoformat())
    for side in ("a", "b"):
        out[f"listen_data_{side}"] = votes[f"listen_data_{side}"].map(json.dumps)
        preds = votes[f"apex_{side}"].map(lambda d: d or {})
        for key in _APEX_KEYS:
            out[f"apex_{side}_{key}"] = preds.map(lambda d, k=key: d.get(k))
        marks = votes[f"ratings_{side}"].map(lambda d: d or {})
        for name in AESTHETICS:
            out[f"rating_{side}_{name}"] = marks.map(lambda d, k=name: d.get(k))
    return out[list(VOTE_COLUMNS)]


def shard_ranges(folder: Path) -> Iterator[tuple[int, int, Path]]:
    """``(from, to, path)`` of every shard under ``folder`` (any depth, unordered)."""
    for path in folder.rglob("*.parquet"):
        if match := _SHARD_NAME.match(path.name):
            yield int(match[1]), int(match[2]), path


def exported_up_to(out_dir: str | Path) -> int:
    """The largest store row id already in a shard under ``out_dir`` (0 when none)."""
    return max((to for _, to, _ in shard_ranges(Path(out_dir) / SHARD_DIR)), default=0)


def export_shards(
    store: VoteStore, out_dir: str | Path, *, max_rows: int = _MAX_ROWS
) -> list[Path]:
    """Write the votes not yet exported as new shards of at most ``max_rows`` under
    ``out_dir/votes/``, never touching existing ones; return the new paths, in row order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Two exporters into one folder (the app's sync and a CLI run) would each write their own
    # overlapping range; an exclusive lock on the folder makes them take turns.
    with (out / _LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = exported_up_to(out)
        votes = store.votes_frame(since_row=start)
        ours = votes[~votes["imported"]]
        if ours.empty:
            return []
        end = int(votes["row_id"].max())  # imported votes after the last of ours count as done
        frame = release_frame(ours)
        month = pd.to_datetime(frame["timestamp"], unit="s", utc=True).dt.strftime("%Y/%m")
        # A new shard starts where the month changes or the current one is full; rows stay in
        # order, so shards' row ranges are contiguous and the largest `to` is the export state.
        cut = np.array(month != month.shift(), dtype=bool)
        cut[::max_rows] = True
        written, first = [], start + 1
        groups = list(frame.groupby(cut.cumsum(), sort=True))
        for n, (_, part) in enumerate(groups):
            last = end if n == len(groups) - 1 else int(part["row_id"].max())
            name = f"{first:0{_ID_DIGITS}d}-{last:0{_ID_DIGITS}d}.parquet"
            path = out / SHARD_DIR / month[part.index[0]] / name
            table = pa.Table.from_pandas(part, schema=SCHEMA, preserve_index=False)
            try:  # exclusive: fails rather than replace, so a published shard is never rewritten
                with atomic_path(path, exclusive=True) as tmp:
                    pq.write_table(table, tmp)
            except FileExistsError:
                raise ExportError(
                    f"{path} already exists; another export is running into the same folder, or "
                    "the folder holds shards of another store. Export each store into its own "
                    "folder."
                ) from None
            written.append(path)
            first = last + 1
        return written


def read_vote_shards(directory: str | Path) -> pd.DataFrame:
    """All shards under ``directory`` (any depth) as one released-columns table, in row order."""
    tables = [conform(pq.read_table(path)) for _, _, path in sorted(shard_ranges(Path(directory)))]
    return pa.concat_tables([SCHEMA.empty_table(), *tables]).to_pandas()


def _record(row: dict[str, Any]) -> tuple[int | None, VoteRecord]:
    if row.get("preference") not in PREFERENCES:
        raise ExportError(
            f"vote {row.get('vote_id')!r} has preference {row.get('preference')!r}, not one of "
            f"{PREFERENCES}; fix or drop that row before importing."
        )
    if row.get("source") not in SOURCES:
        raise ExportError(f"vote {row.get('vote_id')!r} has unknown source {row.get('source')!r}.")
    values = {k: (None if pd.isna(v) else v) for k, v in row.items()}
    for side in ("a", "b"):
        values[f"listen_data_{side}"] = json.loads(values.get(f"listen_data_{side}") or "[]")
        values[f"apex_{side}"] = _gather(values, f"apex_{side}_", _APEX_KEYS, float)
        values[f"ratings_{side}"] = _gather(values, f"rating_{side}_", AESTHETICS, int)
    values["is_instrumental"] = bool(values["is_instrumental"])
    values["flags"] = values.get("flags") or ""  # shards from before the flags column
    values["signed_in"] = bool(values.get("signed_in"))
    values["vote_id"] = values.get("vote_id") or values["battle_uuid"]
    row_id = values.get("row_id")
    return (None if row_id is None else int(row_id)), VoteRecord.from_mapping(values)


def _gather(values: dict[str, Any], prefix: str, keys: tuple[str, ...], cast: type) -> Any:
    """``{key: cast(values[prefix + key])}`` of the keys with a value, or None when none has."""
    got = {k: cast(values[prefix + k]) for k in keys if values.get(prefix + k) is not None}
    return got or None


def import_shards(store: VoteStore, directory: str | Path) -> int:
    """Add the votes of every shard under ``directory`` to ``store``; return how many were new
    (idempotent by vote id). Raises :class:`ExportError` naming a row that is not a valid vote."""
    records = [_record(row) for row in read_vote_shards(directory).to_dict("records")]
    return store.import_votes(records)


def to_csv(store: VoteStore, path: str | Path) -> Path:
    """Write every vote, released columns, to one CSV file (for spreadsheets); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:  # a spreadsheet never opens half a file
        release_frame(store.votes_frame()).to_csv(tmp, index=False)
    return path

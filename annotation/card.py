"""The dataset card (``README.md``) of the public votes dataset: built from
:data:`annotation.export.VOTE_COLUMNS` and the shards' counts, written next to the shards."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData

from annotation.export import CONFIG, SCHEMA, VOTE_COLUMNS
from apex.files import write_text_atomic
from apex.tasks import APEX_BIBTEX

if TYPE_CHECKING:
    from apex.settings import Settings

#: Where vote shards live inside the export folder and the dataset repo (the ``datasets`` glob).
SHARD_GLOB = "votes/**/*.parquet"
#: Licence of the votes themselves (the audio clips keep their own licences).
LICENSE = "cc-by-4.0"
#: The card's file name, in the export folder and the repo.
CARD_FILE = "README.md"
#: Parquet metadata key of a compacted file: the JSON list of the shard names it replaced.
COMPACTED_FROM = b"apex_compacted_from"
#: The Hub's fixed ``size_categories``, the first below 10**3 rows and each next one below 10x more.
_SIZE_LABELS = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M")
_MUSIC_ARENA_BIBTEX = """@misc{kim2025musicarena,
  title         = {Music Arena: Live Evaluation for Text-to-Music},
  author        = {Yonghyun Kim and others},
  year          = {2025},
  eprint        = {2507.20900},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2507.20900}
}"""
_CITATIONS = f"```bibtex\n{APEX_BIBTEX}\n\n{_MUSIC_ARENA_BIBTEX}\n```"


@dataclass(frozen=True)
class CardStats:
    """Counts shown on the card: votes, the systems on either side (sorted), the UTC times of the
    first and last vote (None when empty), simulated votes, shard files, and each compacted
    monthly file's ``(repo path, shards replaced, votes)``."""

    n_votes: int = 0
    systems: tuple[str, ...] = ()
    first_vote: datetime | None = None
    last_vote: datetime | None = None
    n_simulated: int = 0
    n_shards: int = 0
    compactions: tuple[tuple[str, int, int], ...] = ()


def stats_from_frame(frame: pd.DataFrame) -> CardStats:
    """Card counts from a votes table (columns as released; missing columns count as empty)."""
    if frame.empty:
        return CardStats()
    systems = frame.reindex(columns=["system_a", "system_b"]).melt()["value"].dropna()
    first = last = None
    stamps = frame.get("timestamp", pd.Series(dtype=float)).dropna()
    if len(stamps):
        # Shards may carry epoch seconds or datetimes: normalise both to aware UTC.
        unit = "s" if pd.api.types.is_numeric_dtype(stamps) else None
        times = pd.to_datetime(stamps, unit=unit, utc=True)
        first, last = (t.to_pydatetime(warn=False) for t in (times.min(), times.max()))
    simulated = int((frame["source"] == "simulated").sum()) if "source" in frame else 0
    return CardStats(
        n_votes=len(frame),
        systems=tuple(sorted(set(systems.astype(str)))),
        first_vote=first,
        last_vote=last,
        n_simulated=simulated,
    )


def stats_from_shards(folder: Path) -> CardStats:
    """Card counts read from every ``votes/**/*.parquet`` shard under ``folder`` (repo layout)."""
    shards = sorted(Path(folder).glob(SHARD_GLOB))
    if not shards:
        return CardStats()
    wanted = ("timestamp", "system_a", "system_b", "source")
    frames, compactions = [], []
    for shard in shards:
        present = [c for c in wanted if c in pq.read_schema(shard).names]
        frames.append(pq.read_table(shard, columns=present).to_pandas())
        if replaced := compacted_from(shard):
            rel = shard.relative_to(folder).as_posix()
            compactions.append((rel, len(replaced), len(frames[-1])))
    stats = stats_from_frame(pd.concat(frames, ignore_index=True))
    return replace(stats, n_shards=len(shards), compactions=tuple(compactions))


def compacted_from(path: Path) -> list[str]:
    """The shard names a compacted file replaced (its Parquet metadata; [] for a shard)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[COMPACTED_FROM]) if COMPACTED_FROM in meta else []


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` label for ``n`` rows."""
    below = (label for power, label in enumerate(_SIZE_LABELS, start=3) if n < 10**power)
    return next(below, "n>100M")


def build_card(stats: CardStats, *, settings: Settings, repo_id: str | None = None) -> DatasetCard:
    """The dataset card of the votes repo: ``stats``, the vote rules of ``settings``, and
    ``repo_id`` (``owner/name``; a placeholder when None) in the loading example. Its YAML (licence,
    tags, ``configs`` pointing ``datasets`` at the shards, features) is what the Hub validates."""
    from datasets import DatasetInfo, Features
    from datasets.info import DatasetInfosDict

    data = DatasetCardData(
        license=LICENSE,
        pretty_name="APEX Arena votes",
        task_categories=["audio-classification", "text-to-audio"],
        tags=["music", "preference", "human-feedback", "arena", "ai-generated-music", "apex"],
        size_categories=[size_category(stats.n_votes)],
        annotations_creators=["crowdsourced"],
        source_datasets=["original"],
        configs=[{"config_name": CONFIG, "data_files": [{"split": "train", "path": SHARD_GLOB}]}],
    )
    # Every released column, declared: `datasets` and the viewer read every shard with this
    # schema (nulls where an older shard lacks a column) instead of the first file's.
    features = Features.from_arrow_schema(SCHEMA)
    DatasetInfosDict({CONFIG: DatasetInfo(features=features)}).to_dataset_card_data(data)
    body = _body(stats, repo_id or "<owner>/<name>", settings)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_dataset_card(folder: Path, card: DatasetCard) -> bool:
    """Write ``card`` to ``folder/README.md`` only when its text changed (an unchanged card keeps
    its modification time, so the sync does not re-upload it); return True if written."""
    path = Path(folder) / CARD_FILE
    text = str(card)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text_atomic(path, text)  # a push never sees half a card
    return True


def utc_minute(value: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM UTC`` for people ("—" for None)."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _body(stats: CardStats, repo_id: str, settings: Settings) -> str:
    escaped = {name: doc.replace("|", "\\|") for name, doc in VOTE_COLUMNS.items()}
    rows = "\n".join(f"| `{name}` | {doc} |" for name, doc in escaped.items())
    systems = ", ".join(f"`{s}`" for s in stats.systems) or "—"
    simulated = ""
    if stats.n_simulated:
        simulated = (
            f'\n**{stats.n_simulated} of these votes are simulated** (`source == "simulated"`): '
            "they come from the synthetic demo corpus and no human cast them. Filter them out "
            "for any analysis of human preferences.\n"
        )
    compactions = "\n".join(
        f"- `{path}`: {n} shards, {votes} votes" for path, n, votes in stats.compactions
    )
    compactions = f"Compacted so far:\n\n{compactions}" if compactions else "None so far."
    window_min = settings.rate_limit_window_s / 60
    return f"""# APEX Arena votes

Pairwise human preferences between AI-generated songs, collected in the
[APEX Arena](https://arxiv.org/abs/2605.03395) blind listening arena. Each row is one vote on one
battle: a listener heard two anonymous clips (same prompt where possible) and chose `A`, `B`, `TIE`
or `BOTH_BAD` (Music Arena's vocabulary). Each row also records what the APEX model predicted for
both clips at vote time, and the model version.

## Counts

| | |
|---|---|
| Votes | {stats.n_votes} |
| Systems | {len(stats.systems)} |
| First vote | {utc_minute(stats.first_vote)} |
| Last vote | {utc_minute(stats.last_vote)} |
| Shards | {stats.n_shards} |

Systems: {systems}
{simulated}
## How to load

```python
from datasets import load_dataset

votes = load_dataset("{repo_id}", split="train")
df = votes.to_pandas()
```

Shards written before a column existed load with nulls in it (the card declares the features).
Without `datasets`, with pyarrow:

```python
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from huggingface_hub import snapshot_download

folder = Path(snapshot_download("{repo_id}", repo_type="dataset", allow_patterns=["votes/**"]))
files = sorted(str(f) for f in folder.glob("votes/**/*.parquet"))
schema = pa.unify_schemas([pq.read_schema(f) for f in files])  # older shards lack newer columns
table = pads.dataset(files, schema=schema, format="parquet").to_table()
df = table.to_pandas()
```

(DuckDB: `SELECT * FROM read_parquet('votes/**/*.parquet', union_by_name = true)`.)

Shards are `votes/YYYY/MM/<from>-<to>.parquet` (the store row ids covered); new votes arrive as
new files. `vote_id` is unique: deduplicate on it when merging snapshots. Columns are only ever
added, never removed or retyped.

## Compactions

Once a month has ended, its shards are compacted into one file in a single commit that removes
only the shards whose every row was verified in it (named in its Parquet metadata key
`apex_compacted_from`): no vote is lost or duplicated. {compactions}

## Columns

| Column | Meaning |
|---|---|
{rows}

## How the votes are collected

- Both clips are served anonymously; the systems are revealed only after the vote. One vote per
  battle; battles expire after {settings.battle_ttl_s:g} s.
- A vote counts only after each clip was played for at least {settings.min_listen_s:g} s, checked
  on the server from recorded listen events and wall-clock time, not the browser's word.
- Each voter may cast at most {settings.rate_limit_votes} votes per {window_min:g} minutes.
- `user_pseudonym` is a keyed hash (HMAC, secret salt) of the voter's IP address or session; raw
  IP addresses are never stored or released.
- `BOTH_BAD` votes are kept here but left out of the ratings; a `TIE` counts half a win each way.

## Where the audio is

`audio_a` and `audio_b` are paths inside the clip pool (with its revision) named by `pool`; null
for votes from before that column. For the two Hub kinds, fetch a clip with
`hf_hub_download(<repo>, audio_a, repo_type="dataset", revision="<revision>")`.

- `music-arena/music-arena-dataset@<revision>:<batch>`: Music Arena's public release, one
  monthly batch. Licence: that dataset's card (non-public systems' audio is not released).
- `<owner>/<name>@<revision>`: an audiofolder dataset on the Hub. Licence: its card.
- `demo:<seed>`: APEX Arena's synthetic demo corpus (made-up systems, not real AI music), rebuilt
  by `apex.demo.build_demo_corpus(folder, seed=<seed>)` (480 clips unless `APEX_DEMO_CLIPS` was
  set). Licence: MIT, like APEX Arena's code.
- `local:<folder>`: a folder of the deployment that ran the arena, not published. Licence: the
  clips' own.

## Licence

The votes are released under **CC-BY-4.0**. The audio clips they refer to are not part of this
dataset and keep their own licences (those of the generating systems and the clip pools, above).

## Citation

If you use these votes, please cite APEX and Music Arena:

{_CITATIONS}
"""

"""The output folder of ``apex embed``: atomic Parquet shards, resumption, one encoder per folder.

``OUT/job.json`` (encoder id + settings key), ``OUT/embeddings/part-<run>-<n>.parquet`` (a row
per embedded song) and ``OUT/errors/part-<run>-<n>.parquet`` (a row per failure, kept as a log).
A song is finished once its id is in an embeddings shard; a rerun retries every other song."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from apex.embed.records import EMBEDDING_FIELDS, ERROR_FIELDS
from apex.files import atomic_path, is_partial, write_text_atomic

EMBEDDINGS_DIR = "embeddings"
ERRORS_DIR = "errors"
JOB_FILE = "job.json"


class EmbedError(RuntimeError):
    """The embedding job cannot go on; the message says why and what to do."""


def finished_ids(out_dir: Path) -> set[str]:
    """Ids already in an embeddings shard under ``out_dir`` (empty when there is none)."""
    shards = (Path(out_dir) / EMBEDDINGS_DIR).glob("*.parquet")
    return set().union(*(pq.read_table(p, columns=["id"])["id"].to_pylist() for p in shards))


def read_errors(out_dir: Path) -> pa.Table:
    """Every errors shard under ``out_dir`` as one table (columns: records.ERROR_FIELDS)."""
    files = sorted((Path(out_dir) / ERRORS_DIR).glob("*.parquet"))
    if not files:
        return pa.schema(list(ERROR_FIELDS)).empty_table()
    tables = [pq.read_table(f) for f in files]
    # shards written before the audio column was named "audio" call it "source"
    names = [["audio" if c == "source" else c for c in t.column_names] for t in tables]
    return pa.concat_tables([t.rename_columns(n) for t, n in zip(tables, names, strict=True)])


class ShardWriter:
    """Buffers records and commits them as shards of ``shard_size`` songs into ``out_dir``
    (created when missing); counts what it wrote (``written``, ``audio_seconds``)."""

    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir = Path(out_dir)
        self.shard_size = shard_size
        self.run = f"{os.getpid():x}{uuid.uuid4().hex[:8]}"  # unique among concurrent runs
        self.written = {"ok": 0, "error": 0}
        self.audio_seconds = 0.0  # of the songs embedded
        self._ok: list[pa.Table] = []
        self._errors: list[pa.Table] = []
        self._count = 0
        for name in (EMBEDDINGS_DIR, ERRORS_DIR):
            folder = self.out_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.iterdir():
                if is_partial(stale):  # left by a killed run: never complete
                    stale.unlink(missing_ok=True)
        job_file = self.out_dir / JOB_FILE
        self._job = json.loads(job_file.read_text()) if job_file.exists() else None

    def add(self, records: pa.Table) -> None:
        """Take a table of records (records.RECORD_SCHEMA); commits whole shards as they fill."""
        self._check_encoder(records)
        is_ok = pc.equal(records["status"], "ok")
        ok, bad = records.filter(is_ok), records.filter(pc.invert(is_ok))
        if ok.num_rows:
            self.audio_seconds += sum(ok.column("duration_s").to_pylist())
            self._ok.append(ok.select([f.name for f in EMBEDDING_FIELDS]))
        if bad.num_rows:
            self._errors.append(bad.select([f.name for f in ERROR_FIELDS]))
        if sum(t.num_rows for t in self._ok) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Commit everything buffered (called at the end, and whenever a shard is full)."""
        if self._errors:
            # Errors go first: a song listed finished must never lack its earlier failures' log.
            self._commit(ERRORS_DIR, pa.concat_tables(self._errors))
            self.written["error"] += sum(t.num_rows for t in self._errors)
            self._errors = []
        if self._ok:
            table = pa.concat_tables(self._ok)
            for start in range(0, table.num_rows, self.shard_size):
                self._commit(EMBEDDINGS_DIR, table.slice(start, self.shard_size))
            self.written["ok"] += table.num_rows
            self._ok = []

    def _commit(self, folder: str, table: pa.Table) -> None:
        name = f"part-{self.run}-{self._count:05d}.parquet"
        self._count += 1
        # The partial file ends in .partial: no "*.parquet" glob ever counts a half-written shard.
        with atomic_path(self.out_dir / folder / name) as tmp:
            pq.write_table(table, tmp)

    def _check_encoder(self, records: pa.Table) -> None:
        ids, keys = (records.column(c).to_pylist() for c in ("encoder_id", "settings_key"))
        for encoder_id, key in set(zip(ids, keys, strict=True)):
            job = {"encoder_id": encoder_id, "settings_key": key}
            if self._job is None:
                write_text_atomic(self.out_dir / JOB_FILE, json.dumps(job, indent=2) + "\n")
                self._job = job
            elif self._job != job:
                raise EmbedError(
                    f"{self.out_dir} holds embeddings from encoder {self._job['encoder_id']!r} "
                    f"(settings {self._job['settings_key']!r}) but this run produces "
                    f"{encoder_id!r} ({key!r}); one encoder per folder (training needs it): pass "
                    "another --out, or the same --encoder/--precision as before."
                )

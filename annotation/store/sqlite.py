"""The vote store on SQLite (WAL), the default backend; refused on a network or FUSE mount.

A vote commits with ``synchronous=FULL`` (fsynced before ``insert_vote`` returns); battles and
listen events with ``NORMAL``: the WAL is sequential, so the next vote's fsync makes them durable.
One writer connection behind a lock, one reader connection per thread.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from annotation.store.records import SCHEMA_VERSION, StoreClosed, StoreError
from annotation.store.sql import SQLITE, SQLVoteStore, migrations

_BUSY_TIMEOUT_S = 30.0

#: File-system types SQLite must not live on: network and FUSE (object storage such as a Storage
#: Bucket volume, s3fs, gcsfuse or hf-mount) file systems: no locks, uploads on close.
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "fuse"}
)


def read_mountinfo() -> str:
    """The mount table of this process (``/proc/self/mountinfo``); "" where there is none."""
    try:
        return Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return ""  # not Linux: no table to read, so the check cannot refuse anything


def filesystem_of(path: str | Path, mountinfo: str) -> tuple[str, str] | None:
    """(mount point, file-system type) of the mount holding ``path`` (which may not exist yet),
    from a mountinfo text; None when no mount matches."""
    target = Path(os.path.realpath(path))
    best: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[4])  # \040: space
        fstype = rest.split()[0]
        if (target == Path(point) or Path(point) in target.parents) and (
            best is None or len(point) >= len(best[0])
        ):
            best = (point, fstype)  # the last, longest match is the mount on top
    return best


def check_local_disk(path: str | Path, mountinfo: str | None = None) -> None:
    """Refuse a SQLite file on a :data:`NETWORK_FS` mount with a StoreError saying what to set."""
    found = filesystem_of(path, read_mountinfo() if mountinfo is None else mountinfo)
    if found is None:
        return
    point, fstype = found
    if fstype.split(".")[0] in NETWORK_FS:
        raise StoreError(
            f"The vote store {path} would live on {point}, a {fstype} mount (network or FUSE "
            "storage, such as a Storage Bucket volume). SQLite needs a local disk: such mounts "
            "have no file locking and may upload a file only when it is closed, so votes could "
            "be lost or the file corrupted. Set APEX_DATA_DIR to a folder on local disk (the "
            "default, ./var; the Hub dataset in APEX_VOTES_REPO keeps the votes across "
            "restarts), or APEX_DATABASE_URL=postgresql://... for a database server. Caches may "
            "live on the mount: APEX_CACHE_DIR."
        )


class _Reader(sqlite3.Connection):
    """A thread's read connection (a subclass, so the store can hold it by weak reference).
    ``in_use`` is held while a query runs: closing a connection another thread is reading from
    crashes the interpreter, so :meth:`SQLiteVoteStore.close` takes it first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_use = threading.Lock()


class SQLiteVoteStore(SQLVoteStore):
    """The SQLite vote store in file ``path`` (its folder is created when missing).

    Raises:
        StoreError: the file is on a network or FUSE mount, cannot use WAL mode, or its schema
            is newer than this code.
    """

    _MIGRATIONS = migrations(SQLITE)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_local_disk(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # guards the writer connection
        self._readers_lock = threading.Lock()
        # Weak: a reader closes when its thread ends (server worker threads come and go).
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._local = threading.local()
        self._closed = False
        self._con = self._connect()
        mode = self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(
                f"{self.path} cannot use WAL mode (got {mode!r}); put the data directory on a "
                "local disk (network file systems do not support it)."
            )
        self._con.execute("PRAGMA synchronous = FULL")
        self._migrate()

    def _connect(self, factory: type[sqlite3.Connection] = sqlite3.Connection) -> Any:
        con = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,
            check_same_thread=False,
            factory=factory,
        )
        con.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        return con

    def close(self) -> None:
        """Close the writer connection and every thread's reader connection."""
        with self._lock, self._readers_lock:
            self._closed = True
            for con in list(self._readers):
                with con.in_use:  # a query running on another thread ends first
                    con.close()
            self._con.close()

    @contextmanager
    def _write(self, *, votes: bool = False) -> Iterator[sqlite3.Connection]:
        # Every write takes the database's one write lock up front, votes or not. Only votes wait
        # for the fsync (module docstring); the connection rests at FULL between transactions.
        with self._lock:
            if not votes:
                self._con.execute("PRAGMA synchronous = NORMAL")
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            finally:
                if not votes:
                    self._con.execute("PRAGMA synchronous = FULL")

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        # Autocommit: each query is its own read transaction on the last committed state.
        con = getattr(self._local, "con", None) or self._open_reader()
        with con.in_use:
            if self._closed:  # closed before or while this thread waited
                raise StoreClosed(f"the vote store {self.path} is closed; open it again to read.")
            return self._execute(con, sql, params).fetchall()

    def _open_reader(self) -> _Reader:
        """This thread's read-only connection, opened on its first read."""
        with self._readers_lock:  # close() holds it too: no reader opens after close
            if self._closed:
                raise StoreClosed(f"the vote store {self.path} is closed; open it again to read.")
            con = self._local.con = self._connect(_Reader)
            con.execute("PRAGMA query_only = ON")
            self._readers.add(con)
        return con

    def _integrity_error(self) -> type[Exception]:
        # A failed statement leaves the surrounding transaction intact (SQLite's default ABORT
        # resolution); the shared insert raises StoreError, which rolls back the batch.
        return sqlite3.IntegrityError

    @property
    def schema_version(self) -> int:
        """The schema version of the open database (``PRAGMA user_version``)."""
        return self._read("PRAGMA user_version")[0][0]

    def _migrate(self) -> None:
        if self.schema_version == SCHEMA_VERSION:
            return
        with self._write() as con:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = con.execute("PRAGMA user_version").fetchone()[0]
            self._apply_migrations(con, version, str(self.path))
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def integrity_check(self) -> str:
        """Run ``PRAGMA integrity_check``; returns ``"ok"`` for a healthy file."""
        return "\n".join(row[0] for row in self._read("PRAGMA integrity_check"))

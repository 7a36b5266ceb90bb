"""A throwaway PostgreSQL server for the store tests (import the fixtures into a test module).

``pg_server`` (session) starts one server from the Debian ``postgresql`` package's binaries
(``/usr/lib/postgresql/<version>/bin``, or ``initdb`` on PATH) in a temporary folder, on a free
port of 127.0.0.1, and stops it at the end of the run. ``pg_url`` (per test) creates a fresh
database on it and returns its URL, so tests never see each other's rows.

``APEX_TEST_DATABASE_URL`` (a maintenance database such as ``postgresql://postgres@host/postgres``
on a server CI already runs) replaces the throwaway server. Without either, the tests are skipped
with the command that installs PostgreSQL.

initdb and postgres refuse to run as root; as root the server runs as the ``postgres`` user
(created by the Debian package). ``fsync=off`` makes the throwaway server fast on a busy disk;
it changes nothing the tests observe (they do not crash the server).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_URL = "APEX_TEST_DATABASE_URL"
_INSTALL = "apt-get install -y postgresql (Debian) or set APEX_TEST_DATABASE_URL"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of the maintenance database of a running PostgreSQL server (see the module doc)."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL server binaries not found; {_INSTALL}")
    root = Path(tempfile.mkdtemp(prefix="apex-pg-"))  # not under pytest's 0700 tmp folders
    data, port = root / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run(
        _as_server_user(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-N"]
        ),
        **run,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log")]
    try:
        subprocess.run(_as_server_user([*pg_ctl, "-o", options, "-w", "start"]), **run)
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from exc
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([*pg_ctl, "-m", "immediate", "stop"]), check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """URL of a fresh, empty database on the test server, dropped after the test."""
    import psycopg

    name = f"apex_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield pg_server.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

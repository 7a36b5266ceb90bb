"""Upload leases (:mod:`webui.uploads`): a shared upload is deleted once its last holder lets go.

The leases depend on two things gradio does, tested here against the launched app: ``POST
.../upload`` answers with the JSON list of the stored paths, and identical bytes are stored at
one path. The race they close: gradio writes an identical upload at the path before answering,
so a release in that window must not delete it.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from apex.tasks import SCORE_NAMES
from tests.webui.conftest import write_song
from webui.uploads import UploadLeases, leases_of


def _stored(root: Path, name: str = "song.wav") -> Path:
    path = root / secrets.token_hex(8) / name
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF")
    return path


def test_a_release_while_an_upload_is_in_flight_waits_for_it(tmp_path: Path) -> None:
    leases = UploadLeases(tmp_path)
    path = _stored(tmp_path)
    leases.upload_started()
    leases.upload_finished([str(path)])  # visitor 1's upload
    leases.upload_started()  # visitor 2 sends the same bytes: gradio writes the same path
    leases.release(str(path))  # visitor 1 scored
    assert path.exists()
    leases.upload_finished([str(path)])  # visitor 2's upload is counted
    assert path.exists() and leases.held(str(path)) == 1
    leases.release(str(path))  # visitor 2 scored
    assert not path.exists() and not path.parent.exists()


def test_a_deferred_file_goes_when_the_last_upload_ends(tmp_path: Path) -> None:
    leases = UploadLeases(tmp_path)
    path, other = _stored(tmp_path), _stored(tmp_path, "other.wav")
    for p in (path, other):
        leases.upload_started()
        leases.upload_finished([str(p)])
    leases.upload_started()  # an unrelated upload, failing
    leases.release(str(path))
    assert path.exists()
    leases.upload_finished(())
    assert not path.exists() and other.exists()


def test_files_outside_the_upload_folder_are_never_deleted(tmp_path: Path) -> None:
    leases = UploadLeases(tmp_path / "uploads")
    mine = tmp_path / "mine.wav"
    mine.write_bytes(b"x")
    leases.release(str(mine))
    assert mine.exists()


def _multipart(path: Path) -> tuple[bytes, bytes, str]:
    """The two halves of a multipart body uploading ``path`` as gradio's client does."""
    boundary = secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="{path.name}"\r\nContent-Type: audio/wav\r\n\r\n'
    ).encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    half = len(body) // 2
    return body[:half], body[half:], f"multipart/form-data; boundary={boundary}"


def _upload(url: str, path: Path, pause: threading.Event | None = None) -> str:
    first, second, content_type = _multipart(path)

    def chunks() -> Iterator[bytes]:
        yield first
        if pause is not None:
            assert pause.wait(30)
        yield second

    reply = httpx.post(
        f"{url}gradio_api/upload", content=chunks(), headers={"content-type": content_type}
    )
    assert reply.status_code == 200, reply.text
    (stored,) = reply.json()
    return stored


@pytest.fixture
def own_song(tmp_path: Path) -> Path:
    """Bytes no other test run has (gradio's upload folder is shared on this machine)."""
    return write_song(tmp_path / "own.wav", seed=secrets.randbits(32))


@pytest.mark.slow
def test_gradio_upload_route_is_counted_and_in_flight_uploads_defer_deletion(
    live_app, own_song: Path
) -> None:
    leases = leases_of(live_app.services)
    stored = _upload(live_app.url, own_song)
    assert Path(stored).is_file() and leases.held(stored) == 1
    # Visitor 2 sends identical bytes; while that upload is in flight visitor 1 is done.
    pause = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(_upload, live_app.url, own_song, pause)
        time.sleep(0.5)  # the first half is at the server
        leases.release(stored)
        assert Path(stored).is_file()  # deferred: an upload is in flight
        pause.set()
        assert second.result(30) == stored  # the same path, counted again
    assert Path(stored).is_file() and leases.held(stored) == 1
    leases.release(stored)
    assert not Path(stored).exists()


@pytest.mark.slow
def test_two_identical_uploads_at_once_score_fifty_times_in_a_row_under_load(
    live_app, own_song: Path
) -> None:
    from gradio.utils import get_upload_folder
    from gradio_client import Client, handle_file

    clients = [Client(live_app.url, verbose=False, download_files=False) for _ in range(2)]
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a busy CPU
    try:
        with ThreadPoolExecutor(2) as pool:
            for run in range(50):
                results = list(
                    pool.map(
                        lambda c: c.predict(handle_file(str(own_song)), api_name="/score"),
                        clients,
                    )
                )
                for result in results:
                    assert set(result["scores"]) == set(SCORE_NAMES), run
                assert not list(Path(get_upload_folder()).rglob(own_song.name)), run
    finally:
        burner.kill()
        burner.wait()

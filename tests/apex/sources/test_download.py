"""The downloader against a real HTTP server on 127.0.0.1 that fails on purpose."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apex.sources.download import DownloadConfig, DownloadError, DownloadItem, download_all

FAST = DownloadConfig(min_interval_s=0.0, retries=3, backoff_s=0.01, timeout_s=5.0)


class Server:
    """Serves ``files``; ``faults[path]`` is a queue of ``"503"``, ``"404"`` or ``"drop"`` (send
    half the body, then close the connection) consumed one per request; logs every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.log.append((self.path, self.headers.get("Range")))
                fault = server.faults[self.path].pop(0) if server.faults[self.path] else None
                body = server.files.get(self.path)
                if fault in ("503", "404") or body is None:
                    self.send_response(404 if fault == "404" or body is None else 503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if fault == "drop":
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def requests(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _items(server: Server, n: int = 3, *, size: int = 200_000) -> list[DownloadItem]:
    items = []
    for i in range(n):
        body = bytes((i * 7 + j) % 251 for j in range(size))
        server.files[f"/song{i}.mp3"] = body
        items.append(
            DownloadItem(
                id=f"s{i}",
                url=f"{server.url}/song{i}.mp3",
                file_name=f"audio/s{i}.mp3",
                sha256=hashlib.sha256(body).hexdigest() if i != 2 else None,
                meta={"platform": "suno", "streams": 10 * i},
            )
        )
    return items


def test_downloads_verifies_and_writes_a_manifest(server: Server, tmp_path: Path) -> None:
    items = _items(server)
    results = download_all(items, tmp_path, FAST)
    assert [r.status for r in results] == ["downloaded"] * 3
    for item in items:
        assert (tmp_path / item.file_name).read_bytes() == server.files[f"/song{item.id[1]}.mp3"]
    rows = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [(r["id"], r["audio"], r["streams"]) for r in rows] == [
        ("s0", "audio/s0.mp3", 0),
        ("s1", "audio/s1.mp3", 10),
        ("s2", "audio/s2.mp3", 20),
    ]
    assert not list(tmp_path.rglob("*.part"))


def test_a_rerun_never_refetches_a_file_whose_checksum_matches(
    server: Server, tmp_path: Path
) -> None:
    items = _items(server)
    download_all(items, tmp_path, FAST)
    before = len(server.log)
    again = download_all(items, tmp_path, FAST)
    assert [r.status for r in again] == ["skipped"] * 3  # s2 via its recorded sha256 sidecar
    assert len(server.log) == before
    (tmp_path / "audio" / "s1.mp3").write_bytes(b"corrupted")  # bytes no longer match
    third = download_all(items, tmp_path, FAST)
    assert [r.status for r in third] == ["skipped", "downloaded", "skipped"]
    assert server.requests("/song1.mp3")[-1] is None


def test_resumes_a_dropped_transfer_with_a_range_request(server: Server, tmp_path: Path) -> None:
    items = _items(server, 1)
    server.faults["/song0.mp3"] = ["drop"]
    (result,) = download_all(items, tmp_path, FAST)
    assert result.status == "resumed" and result.attempts == 2
    first, second = server.requests("/song0.mp3")
    assert first is None and second == "bytes=100000-"
    assert (tmp_path / "audio/s0.mp3").read_bytes() == server.files["/song0.mp3"]


def test_resumes_across_runs_after_an_interruption(server: Server, tmp_path: Path) -> None:
    items = _items(server, 1)
    server.faults["/song0.mp3"] = ["drop"]
    (failed,) = download_all(items, tmp_path, DownloadConfig(min_interval_s=0, retries=0))
    assert failed.status == "failed" and not (tmp_path / "audio/s0.mp3").exists()
    assert (tmp_path / "audio/s0.mp3.part").stat().st_size == 100_000
    assert json.loads((tmp_path / "download_errors.jsonl").read_text())["id"] == "s0"
    (done,) = download_all(items, tmp_path, FAST)
    assert done.status == "resumed"
    assert server.requests("/song0.mp3")[-1] == "bytes=100000-"
    assert (tmp_path / "audio/s0.mp3").read_bytes() == server.files["/song0.mp3"]


def test_retries_503_with_backoff_and_gives_up_on_404(server: Server, tmp_path: Path) -> None:
    items = _items(server, 2)
    server.faults["/song0.mp3"] = ["503", "503"]
    server.faults["/song1.mp3"] = ["404"]
    waits: list[float] = []
    results = download_all(items, tmp_path, FAST, sleep=waits.append)
    assert results[0].status == "downloaded" and results[0].attempts == 3
    assert results[1].status == "failed" and "404" in results[1].error
    assert len(server.requests("/song1.mp3")) == 1  # a 404 is not retried
    assert waits == [0.0, 0.0]  # the server's Retry-After: 0, not our backoff
    rows = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(r)["id"] for r in rows] == ["s0"]


def test_a_checksum_mismatch_fails_and_keeps_nothing_half_done(
    server: Server, tmp_path: Path
) -> None:
    (item,) = _items(server, 1)
    wrong = DownloadItem(item.id, item.url, item.file_name, sha256="0" * 64)
    (result,) = download_all([wrong], tmp_path, FAST)
    assert result.status == "failed" and "sha256 mismatch" in result.error
    assert not list((tmp_path / "audio").iterdir())


def test_requests_to_one_host_are_paced(server: Server, tmp_path: Path) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    config = DownloadConfig(min_interval_s=2.0, retries=0)
    download_all(_items(server, 3), tmp_path, config, clock=lambda: now[0], sleep=sleep)
    assert waits == [2.0, 2.0]


def test_offline_and_duplicate_ids_fail_clearly(tmp_path: Path) -> None:
    item = DownloadItem("x", "http://127.0.0.1:9/none.mp3", "x.mp3")  # port 9: nothing listens
    config = DownloadConfig(min_interval_s=0, retries=1, backoff_s=0)
    (result,) = download_all([item], tmp_path, config)
    assert result.status == "failed" and "after 2 attempts" in result.error
    with pytest.raises(DownloadError, match="appears twice"):
        download_all([item, item], tmp_path, config)

"""Uploads deleted after scoring only when no other request holds them (gradio stores identical
uploads at one path): an ASGI middleware counts the paths ``/upload`` answers with, the last
release deletes the file. Why and how: docs/DESIGN.md, "Break a neighbour's upload"."""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

#: Counts kept before paths whose file is gone (removed by gradio's cache schedule) are dropped.
_PRUNE_AT = 10_000

Message = MutableMapping[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


def upload_root() -> Path:
    """Gradio's upload folder (``GRADIO_TEMP_DIR``), resolved."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


class UploadLeases:
    """Unreleased uploads per stored path and uploads in flight; files are deleted only under
    ``root`` (default: gradio's upload folder)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or upload_root()).resolve()
        self._counts: dict[str, int] = {}
        self._in_flight = 0
        self._deferred: set[str] = set()
        self._lock = threading.Lock()

    def held(self, path: str) -> int:
        """Uploads of ``path`` counted and not yet released."""
        with self._lock:
            return self._counts.get(os.path.abspath(path), 0)

    def upload_started(self) -> None:
        """An upload request began: deletions wait until it is counted (or failed)."""
        with self._lock:
            self._in_flight += 1

    def upload_finished(self, paths: Iterable[str]) -> None:
        """An upload request ended: count ``paths`` (none when it failed), then delete deferred
        files nobody holds."""
        with self._lock:
            for path in paths:
                key = os.path.abspath(path)
                self._counts[key] = self._counts.get(key, 0) + 1
            self._in_flight -= 1
            if len(self._counts) > _PRUNE_AT:
                self._counts = {k: n for k, n in self._counts.items() if os.path.exists(k)}
            if self._in_flight == 0:
                for key in self._deferred - self._counts.keys():
                    _delete(Path(key), self.root)
                self._deferred.clear()

    def release(self, path: str) -> None:
        """Let go of one upload of ``path``; the last release deletes it (once no upload is in
        flight). Files outside :attr:`root` are never deleted."""
        if self.root not in Path(path).resolve().parents:
            return
        key = os.path.abspath(path)
        with self._lock:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
                return
            self._counts.pop(key, None)
            if self._in_flight:
                self._deferred.add(key)
            else:
                _delete(Path(key), self.root)


class CountUploads:
    """ASGI middleware counting into ``leases`` the paths each ``POST .../upload`` returns."""

    def __init__(self, app: ASGIApp, leases: UploadLeases) -> None:
        self.app, self.leases = app, leases

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        is_upload = (
            scope.get("type") == "http"
            and scope.get("method") == "POST"
            and str(scope.get("path", "")).rstrip("/").endswith("/upload")
        )
        if not is_upload:
            await self.app(scope, receive, send)
            return
        status, body, counted = 0, bytearray(), False
        self.leases.upload_started()

        async def capture(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status == 200:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False) and not counted:
                    # Counted before the client can read the paths (and a handler release them).
                    counted = True
                    self.leases.upload_finished(_stored_paths(bytes(body)))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if not counted:
                self.leases.upload_finished(())


def _stored_paths(body: bytes) -> list[str]:
    """The paths in gradio's upload response (a JSON list of strings); [] for anything else."""
    try:
        paths = json.loads(body)
    except ValueError:
        return []
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def leases_of(services: Any) -> UploadLeases:
    """The app's one :class:`UploadLeases` (kept on its services object, made on first use)."""
    if getattr(services, "upload_leases", None) is None:
        services.upload_leases = UploadLeases()
    return services.upload_leases


def app_kwargs(services: Any) -> dict[str, Any]:
    """``Blocks.launch(app_kwargs=...)``: the middleware that counts this app's uploads."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(CountUploads, leases=leases_of(services))]}


def _delete(file: Path, root: Path) -> None:
    """Delete an upload and its folder once empty (gradio gives each distinct upload its own)."""
    file.unlink(missing_ok=True)
    if file.parent != root:
        try:
            file.parent.rmdir()
        except OSError as err:  # already gone, or another upload still lives there
            if err.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
                raise


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` tolerating only what concurrent removal causes: entries already gone."""
    import shutil

    def gone_ok(function: Any, name: str, info: Any) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise info[1]

    shutil.rmtree(path, onerror=gone_ok)

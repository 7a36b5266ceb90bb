"""Uploads owned per request: a file is deleted after scoring only when no other request holds it.

Gradio stores an upload under a folder named by a hash of its bytes, so two visitors who upload
the same song at once, or one compare with the same file as A and B, get the same path. Deleting
it after the first request's scoring would take the file from under the second one (which may
still be waiting in the queue). So every upload is counted as it is made, by a small ASGI
middleware around gradio's ``/upload`` route (its response is the JSON list of stored paths), and
a handler that is done with a file *releases* it: the file goes when the last holder lets go.

Counting at the response alone left a window: gradio writes the file (same path) before it
answers, so a release in between deleted the second visitor's upload before it was counted. So
the middleware also marks each upload *in flight* from its first byte until its response is sent;
a release that drops a count to zero while any upload is in flight defers the deletion until none
is (and the count is still zero). Deleting and starting an upload share one lock, so gradio never
writes into a folder while it is being removed. Uploads never scored are removed by the app's
``delete_cache`` schedule like any cached file.
"""

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
    """How many uploads (not yet released) stand behind each stored upload path, and how many
    uploads are in flight; deletes a released file once nobody holds it and none is in flight.

    Args:
        root: the only folder files are ever deleted from (default: gradio's upload folder).
    """

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
        """An upload request began: deletions wait until it has been counted (or failed)."""
        with self._lock:
            self._in_flight += 1

    def upload_finished(self, paths: Iterable[str]) -> None:
        """An upload request ended; count one upload for each of ``paths`` (absolute paths
        gradio stored; none when it failed), then delete deferred files nobody holds."""
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
        """Let go of one upload of ``path``; delete it when nobody holds it any more and no
        upload is in flight (else once none is). Files outside :attr:`root` are never deleted."""
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
    """ASGI middleware: counts the paths each successful ``POST .../upload`` returns.

    Args:
        app: the ASGI app (gradio's FastAPI app).
        leases: where the counts go.
    """

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
    if not isinstance(paths, list):
        return []
    return [p for p in paths if isinstance(p, str)]


def leases_of(services: Any) -> UploadLeases:
    """The app's one :class:`UploadLeases` (kept on its services object, made on first use)."""
    leases = getattr(services, "upload_leases", None)
    if leases is None:
        leases = UploadLeases()
        services.upload_leases = leases
    return leases


def app_kwargs(services: Any) -> dict[str, Any]:
    """``Blocks.launch(app_kwargs=...)``: the middleware that counts this app's uploads."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(CountUploads, leases=leases_of(services))]}


def _delete(file: Path, root: Path) -> None:
    """Delete an upload and its folder once empty (gradio gives each distinct upload its own)."""
    file.unlink(missing_ok=True)
    folder = file.parent
    if folder != root:
        try:
            folder.rmdir()
        except FileNotFoundError:  # already gone
            pass
        except OSError as err:  # another upload still lives there
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` tolerating only what concurrent removal causes: entries already gone."""
    import shutil

    def gone_ok(function: Any, name: str, info: Any) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise info[1]

    shutil.rmtree(path, onerror=gone_ok)

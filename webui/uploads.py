"""Uploads owned per request: a file is deleted after scoring only when no other request holds it.

Gradio stores an upload under a folder named by a hash of its bytes, so two visitors who upload
the same song at once, or one compare with the same file as A and B, get the same path. Deleting
it after the first request's scoring would take the file from under the second one (which may
still be waiting in the queue). So every upload is counted as it is made, by a small ASGI
middleware around gradio's ``/upload`` route (its response is the JSON list of stored paths), and
a handler that is done with a file *releases* it: the file goes when the last holder lets go.
Uploads never scored are removed by the app's ``delete_cache`` schedule like any cached file.
"""

from __future__ import annotations

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


class UploadLeases:
    """How many uploads (not yet released) stand behind each stored upload path."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def hold(self, paths: Iterable[str]) -> None:
        """Count one upload for each of ``paths`` (absolute paths gradio stored)."""
        with self._lock:
            for path in paths:
                key = os.path.abspath(path)
                self._counts[key] = self._counts.get(key, 0) + 1
            if len(self._counts) > _PRUNE_AT:
                self._counts = {k: n for k, n in self._counts.items() if os.path.exists(k)}

    def release(self, path: str) -> bool:
        """Let go of one upload of ``path``; True when nobody holds it any more (delete it)."""
        key = os.path.abspath(path)
        with self._lock:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
                return False
            self._counts.pop(key, None)
            return True


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
        status, body = 0, bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status == 200:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    self.leases.hold(_stored_paths(bytes(body)))
            await send(message)

        await self.app(scope, receive, capture)


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


def forget(path: str | None, leases: UploadLeases, root: Path) -> None:
    """Release an upload; delete it (and its folder, once empty) when nobody else holds it.

    Only files inside gradio's upload folder ``root`` are ever deleted: a path elsewhere (the
    demo corpus, a local file) is not ours to forget.
    """
    if not path:
        return
    file = Path(path).resolve()
    if root not in file.parents or not leases.release(path):
        return
    file.unlink(missing_ok=True)
    folder = file.parent
    if folder != root:
        try:
            folder.rmdir()  # gradio gives each distinct upload its own folder
        except FileNotFoundError:  # already gone with another request's file
            pass
        except OSError as err:  # another upload still lives there
            if not _not_empty(err):
                raise


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` tolerating only what concurrent removal causes: entries already gone."""
    import shutil

    def gone_ok(function: Any, name: str, info: Any) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise info[1]

    shutil.rmtree(path, onerror=gone_ok)


def _not_empty(err: OSError) -> bool:
    import errno

    return err.errno in (errno.ENOTEMPTY, errno.EEXIST)

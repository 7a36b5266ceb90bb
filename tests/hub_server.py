"""A stand-in for the Hugging Face Hub: a local HTTP server for the real ``huggingface_hub`` client.

Point the client at it with ``HF_ENDPOINT=<server.url>`` (in this process before
``huggingface_hub`` is imported, or in the environment of an app process), and the product's own
calls run unchanged: :class:`HubServer` answers the endpoints they use, read from the client's
source (huggingface_hub 2.x):

- ``POST /api/repos/create`` (409 when it exists, which ``exist_ok=True`` accepts);
- ``POST /api/validate-yaml`` (a README's front matter);
- ``POST /api/{type}s/{repo}/preupload/{rev}``: every file is ``regular`` (sent base64 inside the
  commit; the real Hub would say ``lfs`` for big or binary files, which this stand-in does not
  implement), with the git blob id of the file already there, so unchanged files are no-ops;
- ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON: header, then ``file`` / ``deletedFile``);
- ``GET /api/{type}s/{repo}[/revision/{rev}]`` (repo info: ``sha``, ``siblings``);
- ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]`` (one page, recursive or not);
- ``HEAD``/``GET /[{type}s/]{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``, as ``hf_hub_download`` expects.

Missing repos, revisions and files answer 404 with the Hub's ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``), so the client raises its own typed errors; writes without
a token answer 401. Repos live in memory for the server's lifetime, so they outlive the app
processes a test starts and stops. Run standalone: ``python -m tests.hub_server --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub reports as a regular file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One repo: its commits, oldest first, each a full ``path -> bytes`` tree."""

    repo_type: str
    repo_id: str
    private: bool = False
    commits: list[tuple[str, str, dict[str, bytes]]] = field(default_factory=list)

    def tree(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit id, files) at ``revision`` (``main`` or a commit id), or None."""
        if revision == "main":
            oid, _, files = self.commits[-1]
            return oid, files
        for oid, _, files in self.commits:
            if oid == revision:
                return oid, files
        return None


class HubServer:
    """The stand-in Hub on ``127.0.0.1`` (a free port unless given); use as a context manager.

    Attributes:
        url: the endpoint (``http://127.0.0.1:<port>``), for ``HF_ENDPOINT``.
        repos: ``(type, repo_id) -> Repo``: what the Hub holds, for the tests' assertions.
        requests: ``(method, path)`` of every request, in order.
    """

    def __init__(self, port: int = 0) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> HubServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def files(self, repo_type: str, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at ``revision`` ({} when it does not exist or has no commit)."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            found = repo.tree(revision) if repo is not None and repo.commits else None
            return dict(found[1]) if found else {}

    def commits(self, repo_type: str, repo_id: str) -> list[tuple[str, str]]:
        """``(commit id, message)`` of a repo's commits, oldest first."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            return [(oid, msg) for oid, msg, _ in repo.commits] if repo else []


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


_API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/(.*))?$")
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.hub.lock:
            self.hub.requests.append((self.command, path))
        try:
            self._route(path)
        except _HubError as err:
            headers = {"X-Error-Message": str(err)}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, json.dumps({"error": str(err)}).encode(), headers)

    do_GET = do_HEAD = do_POST = _dispatch

    def _need_token(self) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, kind: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((kind, repo_id))
        if repo is None:
            raise _HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _tree(self, repo: Repo, revision: str) -> tuple[str, dict[str, bytes]]:
        found = repo.tree(revision) if repo.commits else None
        if found is None:
            raise _HubError(404, f"Revision {revision} not found", "RevisionNotFound")
        return found

    # ------------------------------------------------------------------ routes
    def _route(self, path: str) -> None:
        if self.command == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(self._body()))
        if self.command == "POST" and path == "/api/validate-yaml":
            self._body()
            return self._json({"warnings": []})
        if match := _API.match(path):
            kind, repo_id, rest = _TYPES[match[1]], match[2], match[3] or ""
            with self.hub.lock:
                return self._api(kind, repo_id, rest)
        if self.command in ("GET", "HEAD") and (match := _RESOLVE.match(path)):
            kind = _TYPES.get(f"{match[1]}", "model") if match[1] else "model"
            with self.hub.lock:
                return self._resolve(kind, match[2], match[3], match[4])
        raise _HubError(404, f"{self.command} {path} is not part of this stand-in")

    def _create_repo(self, body: dict[str, Any]) -> None:
        self._need_token()
        kind = body.get("type") or "model"
        repo_id = (
            f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        )
        prefix = "" if kind == "model" else f"{kind}s/"
        url = f"{self.hub.url}/{prefix}{repo_id}"
        with self.hub.lock:
            if (kind, repo_id) in self.hub.repos:  # the Hub's 409 carries the url too
                body = {"error": f"You already created this {kind} repo", "url": url}
                return self._json(body, 409)
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = Repo(kind, repo_id, private)
            self.hub.repos[(kind, repo_id)] = repo
            _commit(repo, "initial commit", {".gitattributes": b"*.parquet filter=lfs\n"})
        self._json({"url": url, "name": repo_id})

    def _api(self, kind: str, repo_id: str, rest: str) -> None:
        repo = self._repo(kind, repo_id)
        action, _, tail = rest.partition("/")
        if self.command == "POST" and action == "preupload":
            self._need_token()
            _, files = self._tree(repo, tail or "main")
            asked = json.loads(self._body())["files"]
            return self._json({"files": [_upload_mode(f["path"], files) for f in asked]})
        if self.command == "POST" and action == "commit":
            self._need_token()
            return self._commit(repo, tail or "main")
        if self.command == "GET" and action in ("", "revision"):
            oid, files = self._tree(repo, tail or "main")
            return self._json(
                {
                    "id": repo_id,
                    "sha": oid,
                    "private": repo.private,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                    "lastModified": "2026-01-01T00:00:00.000Z",
                }
            )
        if self.command == "GET" and action == "tree":
            revision, _, folder = tail.partition("/")
            _, files = self._tree(repo, revision)
            recursive = self.path.lower().find("recursive=true") >= 0
            return self._json(_listing(files, folder.strip("/"), recursive))
        raise _HubError(404, f"{self.command} /api/.../{rest} is not part of this stand-in")

    def _commit(self, repo: Repo, revision: str) -> None:
        if revision != "main":
            raise _HubError(400, "this stand-in commits to main only")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and parent != repo.commits[-1][0]:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        _, files = self._tree(repo, "main")
        files = dict(files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:
                raise _HubError(400, f"{key} operations are not part of this stand-in")
        oid = _commit(repo, header["summary"], files)
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        url = f"{self.hub.url}/{prefix}{repo.repo_id}/commit/{oid}"
        self._json({"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})

    def _resolve(self, kind: str, repo_id: str, revision: str, name: str) -> None:
        oid, files = self._tree(self._repo(kind, repo_id), revision)
        if name not in files:
            raise _HubError(404, f"{name} not found at {revision}", "EntryNotFound")
        data = files[name]
        etag = f'"{git_blob_id(data)}"'
        self._send(200, data, {"X-Repo-Commit": oid, "ETag": etag, "Accept-Ranges": "none"})


def _commit(repo: Repo, message: str, files: dict[str, bytes]) -> str:
    seed = f"{repo.repo_id}|{len(repo.commits)}|{time.time_ns()}|{message}".encode()
    oid = hashlib.sha1(seed).hexdigest()
    repo.commits.append((oid, message, files))
    return oid


def _upload_mode(path: str, files: dict[str, bytes]) -> dict[str, Any]:
    old = files.get(path)
    oid = git_blob_id(old) if old is not None else None
    return {"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": oid}


def _listing(files: dict[str, bytes], folder: str, recursive: bool) -> list[dict[str, Any]]:
    """Tree entries under ``folder``: files (``oid``, ``size``) and folders, as the Hub lists."""
    prefix = f"{folder}/" if folder else ""
    entries: dict[str, dict[str, Any]] = {}
    for name, data in sorted(files.items()):
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            sub = prefix + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(sub, {"type": "directory", "path": sub, "oid": "0" * 40})
        if recursive or len(parts) == 1:
            entries[name] = {
                "type": "file",
                "path": name,
                "size": len(data),
                "oid": git_blob_id(data),
            }
    return list(entries.values())


def point_client_at(monkeypatch: Any, hub: HubServer, token: str | None = "hf_standin") -> None:
    """Point this process's ``huggingface_hub`` at ``hub`` (online, with ``token`` as HF_TOKEN).

    The client reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, at import; in-process tests set
    the constants it derived from them (``monkeypatch`` undoes it), app processes get the variables.
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)


def main() -> None:
    """Serve the stand-in until interrupted (for trying the app by hand)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with HubServer(args.port) as hub:
        print(f"HF_ENDPOINT={hub.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

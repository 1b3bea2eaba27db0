"""A tiny HTTP server on 127.0.0.1 that answers with canned replies and records each request.

It knows nothing of hwq's API: the client tests script every reply themselves, and check what
the client sent and how it treated the answer.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Recorded:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Canned:
    """One scripted reply; a body that is not bytes is sent as JSON."""

    status: int
    body: object = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class CannedHttpServer:
    """Serves replies queued per `(method, path)`; the last one for a route repeats."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list[Canned]] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.canned = self  # type: ignore[attr-defined]
        # A short poll interval keeps shutdown, and so each test, quick.
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(
        self, method: str, path: str, status: int = 200, body: object = None, **kw: Any
    ) -> None:
        """Queue a reply to `method path` (path without the query string)."""
        self.replies.setdefault((method, path), []).append(Canned(status, body, **kw))

    def answer(self, request: Recorded) -> Canned:
        """Record the request and pick its reply: 404 text when nothing was scripted."""
        with self._lock:
            self.requests.append(request)
            queued = self.replies.get((request.method, request.path))
            if not queued:
                missing = f"no canned reply for {request.method} {request.path}".encode()
                return Canned(404, missing, content_type="text/plain")
            return queued.pop(0) if len(queued) > 1 else queued[0]

    def __enter__(self) -> CannedHttpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = Recorded(
            method=self.command,
            path=url.path,
            query=dict(urllib.parse.parse_qsl(url.query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        canned = self.server.canned.answer(request)  # type: ignore[attr-defined]
        if isinstance(canned.body, bytes):
            payload = canned.body
        else:
            payload = b"" if canned.body is None else json.dumps(canned.body).encode()
        self.send_response(canned.status)
        for name, value in canned.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", canned.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

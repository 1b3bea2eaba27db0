"""The harness's one HTTP client: requests from outside the processes under test.

Tests and benchmarks send every request to hwq's API and to Flower through it, kept alive per
thread (`KeepAliveHttp`) or on a connection of their own (`http`). Clients that must misbehave
on the wire (a head without its body, a byte at a time) use tests/faults/raw_http.py instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPConnection, RemoteDisconnected
from typing import Any
from urllib.parse import urlsplit


class Headers(dict[str, str]):
    """Reply headers, looked up by name in any case, as HTTP compares them."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        super().__init__((name.lower(), value) for name, value in items)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


@dataclass
class Reply:
    """An HTTP reply: status, headers and the decoded JSON body (if any)."""

    status: int
    headers: Headers
    body: Any


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: object = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = 90.0,
) -> Reply:
    """One HTTP request on a connection of its own, closed once the reply is read."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    data, outgoing = outgoing_request(token, body, raw, content_type)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        return _exchange(connection, method, path, {**outgoing, **(headers or {})}, data)
    finally:
        connection.close()


class KeepAliveHttp:
    """HTTP/1.1 keep-alive requests to one server, one connection per calling thread.

    What a busy client does (requests.Session, say): the benchmarks measure the API, not a
    TCP handshake per request. A request that finds its idle connection closed by the
    server is sent again on a new one; the server never read it, so nothing runs twice.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._local = threading.local()

    def request(
        self, method: str, path: str, headers: dict[str, str], data: bytes | None, timeout: float
    ) -> Reply:
        """Send one request and read its whole reply."""
        for attempt in range(2):
            connection: HTTPConnection | None = getattr(self._local, "connection", None)
            reused = connection is not None
            if connection is None:
                connection = HTTPConnection(self.host, self.port, timeout=timeout)
                self._local.connection = connection
            elif connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                reply = _exchange(connection, method, path, headers, data)
            except (RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop(connection)
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self._drop(connection)
                raise
            if connection.sock is None:  # the server said it closes the connection
                self._drop(connection)
            return reply
        raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        """Close the calling thread's connection, if it has one."""
        connection: HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            self._drop(connection)

    def _drop(self, connection: HTTPConnection) -> None:
        connection.close()
        self._local.connection = None


def outgoing_request(
    token: str | None, body: object, raw: bytes | None, content_type: str
) -> tuple[bytes | None, dict[str, str]]:
    """A request's bytes (raw, or the body as JSON) and the headers that go with them."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return data, headers


def _exchange(
    connection: HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    data: bytes | None,
) -> Reply:
    connection.request(method, path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    return Reply(response.status, Headers(response.headers.items()), _json(payload))


def _json(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")

"""HTTP/1.1 over a bare socket, for clients that misbehave: a head without its body, a body
sent a byte at a time, hundreds of requests left open at once."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class RawReply:
    """A reply read off a bare socket."""

    status: int
    headers: dict[str, str]
    body: Any


def send_head(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body_start: bytes = b"",
) -> socket.socket:
    """Open a connection and send a request's head, and maybe the start of its body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body_start)
    return sock


def read_reply(sock: socket.socket, timeout: float) -> RawReply:
    """Read one whole reply (a Content-Length body), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock, deadline)
    head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += _recv(sock, deadline)
    body: Any = rest[:length]
    if "json" in headers.get("content-type", ""):
        body = json.loads(body)
    return RawReply(int(status_line.split()[1]), headers, body)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no whole reply in time")
    sock.settimeout(remaining)
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection before a whole reply")
    return chunk


def timed_get(port: int, path: str, timeout: float = 30.0) -> tuple[RawReply, float]:
    """One GET on a fresh connection and the seconds its reply took."""
    started = time.perf_counter()
    sock = send_head(port, "GET", path)
    try:
        return read_reply(sock, timeout), time.perf_counter() - started
    finally:
        sock.close()

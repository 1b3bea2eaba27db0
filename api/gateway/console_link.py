"""`GET /console` on the gateway's port: a redirect to the browser console the API serves at
`/` on its own port (HWQ_API_PORT), on the host name the browser used to reach the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

CONSOLE_PATH = "/console"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def console_url(headers: list[tuple[bytes, bytes]], scheme: str, api_port: int) -> str:
    """The console's address: the gateway's host as the browser named it, the API's port."""
    host = next((v.decode("latin-1") for k, v in headers if k.lower() == b"host"), "localhost")
    # Without its port ("[::1]:3000" → "[::1]"); an IPv6 literal alone keeps its colons.
    name = host if host.endswith("]") or ":" not in host else host.rsplit(":", 1)[0]
    return f"{scheme}://{name}:{api_port}/"


class ConsoleLink:
    """An ASGI app answering `/console` with a redirect, and 404 for any other path."""

    def __init__(self, api_port: int) -> None:
        self.api_port = api_port

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == CONSOLE_PATH:
            location = console_url(scope["headers"], scope.get("scheme", "http"), self.api_port)
            await _answer(send, 302, b"", [(b"location", location.encode())])
        else:
            await _answer(send, 404, b"not found\n", [(b"content-type", b"text/plain")])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": body})

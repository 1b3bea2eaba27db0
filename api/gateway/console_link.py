"""`GET /console` on the gateway: a redirect to the browser console, which the API serves at
`/` on its own port (HWQ_API_PORT) of the host the browser already reached the gateway by."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONSOLE_PATHS = frozenset({"/console", "/console/"})
# A host name or address as a browser sends it; anything else falls back to the address the
# request came in on, so a forged Host header cannot send the browser somewhere else.
_HOSTNAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])$")


def console_url(scope: Scope, api_port: int) -> str:
    """Where the console is for this request: the same scheme and host, the API's port."""
    headers = dict(scope.get("headers") or [])
    parts = urllib.parse.urlsplit("//" + headers.get(b"host", b"").decode("latin-1"))
    try:
        hostname = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        hostname = ""
    if ":" in hostname:  # an IPv6 address goes in brackets in a URL
        hostname = f"[{hostname}]"
    if not _HOSTNAME.match(hostname):
        server = scope.get("server") or ("127.0.0.1", 0)
        hostname = f"[{server[0]}]" if ":" in server[0] else server[0]
    scheme = "https" if scope.get("scheme") == "https" else "http"
    return f"{scheme}://{hostname}:{api_port}/"


def console_redirect(api_port: int) -> AsgiApp:
    """An ASGI app answering `/console` with a redirect to the console, anything else 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close"})
            return
        if scope["type"] != "http":
            return
        if scope["path"] in CONSOLE_PATHS:
            status, body = 302, b""
            headers = [(b"location", console_url(scope, api_port).encode())]
        else:
            status, body = 404, b"Not found\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app

"""Runs the Flask (WSGI) app for an ASGI request whose body is already read, on a bounded pool.

The front door reads bodies itself (bounded in size and time), so a view never waits on a
slow client: each request holds one of the pool's threads only while the app runs.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# An ASGI response: status, header pairs as bytes, body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def _latin1(text: str) -> str:
    # PEP 3333 carries bytes in str as latin-1; ASGI gives the path decoded as UTF-8.
    return text.encode("utf-8").decode("latin-1")


def wsgi_environ(scope: dict[str, Any], body: bytes, extra: dict[str, Any]) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP request whose whole body is `body`."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": _latin1(scope.get("root_path", "")),
        "PATH_INFO": _latin1(scope["path"]),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **extra,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole: its length is what was read
        key = f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if body or scope["method"] in ("POST", "PUT", "PATCH"):
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


class WsgiBridge:
    """A WSGI app called from asyncio, on at most `threads` threads at once."""

    def __init__(self, app: WsgiApp, threads: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hwq-api")

    async def call(self, environ: dict[str, Any]) -> Answer:
        """Run the app for one request on the pool; its whole answer."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._run, environ)

    async def run_blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking call (a token lookup, say) on the same bounded pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    def _run(self, environ: dict[str, Any]) -> Answer:
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return lambda _data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return int(status.split(" ", 1)[0]), encoded, body

    def close(self) -> None:
        """Let running calls finish; take no more."""
        self.pool.shutdown(wait=False, cancel_futures=True)

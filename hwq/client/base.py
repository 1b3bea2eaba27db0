"""What the sync and the async client share: where the API is, who asks, and how httpx's
failures read."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx

from hwq.client.calls import API_PREFIX, Call, Routes
from hwq.client.errors import ConnectionFailed, HwqClientError, RequestTimedOut

# Seconds a request may take beyond any wait it asks the server to hold.
DEFAULT_TIMEOUT_S = 30.0
# How long connecting may take, whatever the request.
CONNECT_TIMEOUT_S = 10.0
# How long a live stream may be silent: the server sends a keep-alive every 15 s.
STREAM_READ_TIMEOUT_S = 60.0
# How long past its timeout a command may still be queued behind others before `run` stops
# waiting for it and returns it as it stands.
RUN_QUEUE_ALLOWANCE_S = 30.0
USER_AGENT = "hwq-client"


class ClientBase:
    """The API's address, the token (never shown) and the timeouts."""

    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"the hwq URL must be an http:// or https:// URL, not {url!r}")
        self.base_url = url.rstrip("/").removesuffix(API_PREFIX)
        self.timeout = timeout
        self.routes = Routes(self.base_url)
        self._token = token

    def __repr__(self) -> str:
        # Never the token: reprs end up in tracebacks and logs.
        token = "set" if self._token else "unset"
        return f"{type(self).__name__}({self.base_url!r}, token={token})"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _request_options(self, call: Call[Any]) -> dict[str, Any]:
        """httpx's arguments for one call."""
        timeout = httpx.Timeout(self.timeout + call.hold_s, connect=CONNECT_TIMEOUT_S)
        options: dict[str, Any] = {
            "method": call.method,
            "url": API_PREFIX + call.path,
            "params": call.params,
            "timeout": timeout,
        }
        if call.body is not None:
            options["json"] = call.body
        if call.headers:
            options["headers"] = dict(call.headers)
        return options

    def _stream_options(self, call: Call[Any]) -> dict[str, Any]:
        """httpx's arguments for a live stream: silent up to its keep-alive, never longer."""
        options = self._request_options(call)
        options["timeout"] = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT_S)
        return options

    def _transport_error(self, call: Call[Any], error: httpx.HTTPError) -> HwqClientError:
        """What a failure to get an answer at all says to the caller."""
        if isinstance(error, httpx.TimeoutException) and not isinstance(
            error, httpx.ConnectTimeout
        ):
            timeout = self.timeout + call.hold_s
            return RequestTimedOut(
                f"the hwq API at {self.base_url} did not answer {call.method} {call.path} "
                f"within {timeout:g} s",
                status=504,
                title="Timed out",
            )
        detail = (
            "timed out connecting" if isinstance(error, httpx.ConnectTimeout) else _reason(error)
        )
        return ConnectionFailed(
            f"the hwq API at {self.base_url} is not reachable ({detail}); "
            "start it with `hwq up`, or set HWQ_URL to where it runs",
            status=503,
            title="API unreachable",
            detail=detail,
        )


def _reason(error: BaseException) -> str:
    """The innermost OS error's words (`Connection refused`), else the error's own."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(error) or type(error).__name__

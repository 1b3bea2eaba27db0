"""A client of a device's SSE stream, from outside the API, on a thread and a socket of its own."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPResponse
from typing import Any

from bench.local_stack import Stack

# How long a test waits for the events it expects before it fails.
EXPECT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Event:
    """One event as an observer received it."""

    id: str
    kind: str
    data: dict[str, Any]

    @property
    def chunk(self) -> bytes:
        """The bytes of an rx or tx event."""
        return base64.b64decode(self.data["data"])


def parse_sse(lines: Iterator[bytes]) -> Iterator[Event]:
    """The events of an SSE body, by the WHATWG event-stream rules: read here independently of
    the client's parser, so the wire format itself is what the tests check."""
    event_id, kind, data = "", "message", []
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield Event(event_id, kind, json.loads("\n".join(data)))
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)


class Observer:
    """Follows one device's stream in a thread, keeping every event; close() drops it."""

    def __init__(
        self,
        stack: Stack,
        device: str,
        token: str | None = None,
        *,
        in_query: bool = False,
        last_event_id: str | None = None,
        query: str = "",
    ) -> None:
        token = token or stack.admin_token
        path = f"/api/v1/devices/{device}/stream"
        headers = {"Accept": "text/event-stream"}
        params = [query] if query else []
        if in_query:
            params.append(f"token={token}")
        else:
            headers["Authorization"] = f"Bearer {token}"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        if params:
            path += "?" + "&".join(params)
        self.connection = HTTPConnection("127.0.0.1", stack.api_port, timeout=90)
        self.connection.request("GET", path, headers=headers)
        self.response: HTTPResponse = self.connection.getresponse()
        self.status = self.response.status
        self.events: list[Event] = []
        self.ended = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.body = json.loads(self.response.read() or b"null")
            self.connection.close()

    def _read(self) -> None:
        try:
            for parsed in parse_sse(iter(self.response.readline, b"")):
                with self._changed:
                    self.events.append(parsed)
                    self._changed.notify_all()
        except Exception:
            # Closed by the test: http.client fails in several ways when the socket under a
            # read is shut. A stream that breaks otherwise shows as events that never came.
            pass
        finally:
            self.ended.set()
            with self._changed:
                self._changed.notify_all()

    def wait_until(self, check: Any, what: str, timeout: float = EXPECT_TIMEOUT_S) -> None:
        """Block until check(events) holds; fail naming `what` if it does not in time."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended.is_set():
                    kinds = [(e.kind, e.data.get("text", e.data.get("state"))) for e in self.events]
                    raise AssertionError(f"{what} not seen; events: {kinds[-40:]}")
                self._changed.wait(remaining)

    def close(self) -> None:
        """Drop the connection, as a client that goes away does."""
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.response.close()
        if self._thread is not None:
            self._thread.join(10)

    def of_kind(self, kind: str) -> list[Event]:
        """The events of one kind, in the order they came."""
        return [e for e in self.events if e.kind == kind]


def command_state_seen(device_events: list[Event], command_id: str, state: str) -> bool:
    """Whether a `command` event says the command reached `state`."""
    return any(
        e.kind == "command" and e.data.get("id") == command_id and e.data.get("state") == state
        for e in device_events
    )

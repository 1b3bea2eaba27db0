"""The device a sandboxed program talks to: its requests, checked and performed by the worker.

The program sends one JSON request per line on its socket (`write`, `read`, `query`); the
broker here checks each one, performs it on a `ProgramDevice` within what is left of the
program's time, and answers one JSON line. The port itself stays in the worker.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any, Protocol

from tasks.errors import DeviceError
from worker_host.exchange import DeviceExchange

# Longest request line a program may send (a write of up to 1 MiB, as base64).
MAX_REQUEST_BYTES = 2 * 1024 * 1024
# Most bytes one `read` returns.
MAX_READ_BYTES = 1024 * 1024


class ProgramDevice(Protocol):
    """What a program's `device` object reaches."""

    def write(self, data: bytes) -> None:
        """Send bytes as they are."""
        ...

    def read(self, timeout: float, size: int) -> bytes:
        """Up to `size` bytes that came within `timeout` seconds; b"" if none."""
        ...

    def query(self, text: str, timeout: float) -> str:
        """Send one line and return the line the device answers."""
        ...


class ExchangeDevice:
    """A program's device on a worker's exchange: the port it keeps, its line rules.

    `query` is a line command through the exchange (a clean port, the device's line ending);
    `write` and `read` go to the transport as they are, so the exchange drains the port
    before the next command, which must not take a program's leftovers for its reply.
    """

    def __init__(self, exchange: DeviceExchange) -> None:
        self.exchange = exchange
        self._unread = b""

    def write(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.exchange.check_ready()
        self.exchange.mark_dirty("a program wrote to the port")
        self.exchange.transport.write(data)

    def read(self, timeout: float, size: int) -> bytes:
        """Up to `size` bytes that came within `timeout` seconds."""
        if not self._unread:
            self.exchange.check_ready()
            self._unread = self.exchange.transport.read_some(timeout)
        data, self._unread = self._unread[:size], self._unread[size:]
        return data

    def query(self, text: str, timeout: float) -> str:
        """One line command on the exchange; its reply line."""
        reply = self.exchange.run("line", text, timeout)
        return str(reply["text"])

    def close(self) -> None:
        """Whatever the program left unread is not the next command's."""
        if self._unread:
            self.exchange.mark_dirty("a program left bytes unread")


class DeviceBroker:
    """Turns a program's request lines into calls on its device, and the results into replies."""

    def __init__(self, device: ProgramDevice | None) -> None:
        self.device = device
        self._buffer = b""

    def feed(self, chunk: bytes, deadline: float) -> list[bytes]:
        """Take bytes from the program; the reply lines to the requests they complete."""
        self._buffer += chunk
        replies = []
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            replies.append(json.dumps(self._answer(line, deadline)).encode() + b"\n")
        if len(self._buffer) > MAX_REQUEST_BYTES:
            self._buffer = b""
            refusal = {"error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
            replies.append(json.dumps(refusal).encode() + b"\n")
        return replies

    def _answer(self, line: bytes, deadline: float) -> dict[str, Any]:
        if self.device is None:
            return {"error": "this program has no device"}
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            return self._perform(self.device, request, deadline)
        except (ValueError, TypeError, KeyError, binascii.Error) as e:
            return {"error": f"bad device request: {e}"}
        except DeviceError as e:
            return {"error": str(e)}

    def _perform(
        self, device: ProgramDevice, request: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        op = request.get("op")
        if op == "write":
            device.write(base64.b64decode(str(request["data"]), validate=True))
            return {"ok": True}
        timeout = _timeout(request, deadline)
        if op == "read":
            size = int(request.get("size", MAX_READ_BYTES))
            if not 1 <= size <= MAX_READ_BYTES:
                raise ValueError(f"size must be 1 to {MAX_READ_BYTES}")
            return {"data": base64.b64encode(device.read(timeout, size)).decode()}
        if op == "query":
            text = request["text"]
            if not isinstance(text, str):
                raise ValueError("text must be a string")
            return {"text": device.query(text, timeout)}
        raise ValueError(f"unknown op {op!r}")


def _timeout(request: dict[str, Any], deadline: float) -> float:
    """The request's timeout, cut to what is left of the program's time."""
    timeout = float(request.get("timeout", 1.0))
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    left = deadline - time.monotonic()
    if left <= 0:
        raise ValueError("the program's time is up")
    return min(timeout, left)

"""One request and its reply on a serial transport, for each command kind a device speaks."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Protocol

from tasks.errors import DeviceError, ReplyTimeout
from worker_host.codecs import (
    DEFAULT_LINE_TERMINATOR,
    FRAME_DELIMITER,
    FrameSplitter,
    RawReplyAssembler,
    decode_line,
    decode_reply,
    encode_request,
)
from worker_host.transport import SerialTransport

# How long the next command waits for the reply a timed-out command still owes, so that the
# late reply is not taken for the next command's answer.
LATE_REPLY_GRACE_S = 2.0
# Sequence numbers are one byte on the wire.
_SEQ_MODULO = 256

NoiseSink = Callable[[bytes], None]


class _Reply(Protocol):
    """What the exchange needs from the reader of one kind of reply."""

    def feed(self, data: bytes) -> bytes:
        """Take received bytes; return those that are noise rather than part of the reply."""
        ...

    def complete(self, idle_for_s: float) -> bool:
        """True once the reply is whole."""
        ...

    def wait_s(self, idle_for_s: float) -> float | None:
        """Longest useful wait before complete() may change without new bytes, or None."""
        ...

    def unconsumed(self) -> bytes:
        """Bytes received but not part of the reply: the partial reply, or what followed it."""
        ...

    def response(self) -> dict[str, object]:
        """The command's response object (DESIGN §3)."""
        ...


class _LineReply:
    """The next line the device sends."""

    def __init__(self, terminator: bytes = DEFAULT_LINE_TERMINATOR) -> None:
        self._terminator = terminator
        self._buffer = b""
        self._line: str | None = None

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if self._line is None:
            raw, found, rest = self._buffer.partition(self._terminator)
            if found:
                self._line, self._buffer = decode_line(raw), rest
        return b""

    def complete(self, idle_for_s: float) -> bool:
        return self._line is not None

    def wait_s(self, idle_for_s: float) -> float | None:
        return None

    def unconsumed(self) -> bytes:
        return self._buffer

    def response(self) -> dict[str, object]:
        return {"text": self._line}


class _RawReply:
    """Bytes up to a terminator, a count, or an idle gap."""

    def __init__(self, assembler: RawReplyAssembler) -> None:
        self._assembler = assembler
        # The idle rule ends a reply by time, not by bytes, so remember that it did.
        self._done = False

    def feed(self, data: bytes) -> bytes:
        self._assembler.feed(data)
        return b""

    def complete(self, idle_for_s: float) -> bool:
        self._done = self._done or self._assembler.complete(idle_for_s)
        return self._done

    def wait_s(self, idle_for_s: float) -> float | None:
        return self._assembler.wait_s(idle_for_s)

    def unconsumed(self) -> bytes:
        return self._assembler.leftover if self._done else self._assembler.reply

    def response(self) -> dict[str, object]:
        return {"data": base64.b64encode(self._assembler.reply).decode("ascii")}


class _FrameReply:
    """The reply frame carrying one sequence number; other or corrupt frames are noise."""

    def __init__(self, seq: int) -> None:
        self._seq = seq
        self._splitter = FrameSplitter()
        self._answer: dict[str, object] | None = None
        self._after = b""

    def feed(self, data: bytes) -> bytes:
        if self._answer is not None:
            self._after += data
            return b""
        noise = bytearray()
        frames = self._splitter.feed(data)
        for index, frame in enumerate(frames):
            try:
                reply = decode_reply(frame)
            except DeviceError:
                reply = None
            if reply is None or reply.seq != self._seq:
                noise += frame + FRAME_DELIMITER
                continue
            self._answer = {"status": reply.status, "values": reply.values}
            later = frames[index + 1 :]
            self._after = b"".join(f + FRAME_DELIMITER for f in later) + self._splitter.pending
            break
        return bytes(noise)

    def complete(self, idle_for_s: float) -> bool:
        return self._answer is not None

    def wait_s(self, idle_for_s: float) -> float | None:
        return None

    def unconsumed(self) -> bytes:
        return self._after if self._answer is not None else self._splitter.pending

    def response(self) -> dict[str, object]:
        assert self._answer is not None
        return self._answer


class DeviceExchange:
    """Sends one command and collects its reply; remembers a reply owed by a timed-out command."""

    def __init__(
        self,
        transport: SerialTransport,
        on_noise: NoiseSink,
        late_reply_grace_s: float = LATE_REPLY_GRACE_S,
    ) -> None:
        self.transport = transport
        self._on_noise = on_noise
        self._grace_s = late_reply_grace_s
        self._seq = 0
        # Received bytes that belong to no command yet: a partial late reply, or what
        # followed a reply. Reported as noise before the next command is written.
        self._pending = b""
        # Reader of the reply a timed-out command may still send.
        self._owed: _Reply | None = None

    def check_ready(self) -> None:
        """Open the port if it is closed; DeviceError if it cannot be opened."""
        if not self.transport.is_open:
            self.transport.open()

    def run(
        self,
        kind: str,
        payload: object,
        timeout_s: float,
        read: dict[str, object] | None = None,
    ) -> dict[str, object]:
        """Send one command of the given kind and return its response object (DESIGN §3)."""
        if not timeout_s > 0:
            raise DeviceError(f"timeout must be positive, got {timeout_s!r}")
        request, reply = self._prepare(kind, payload, read)
        try:
            self.settle()
            self.transport.write(request)
            self._collect(reply, time.monotonic() + timeout_s, timeout_s)
        except ReplyTimeout:
            self._pending = reply.unconsumed()
            # A raw reply has no boundary to wait for later; line and frame replies do.
            self._owed = None if kind == "raw" else reply
            raise
        except DeviceError:
            # The transport closed the port: whatever was buffered is gone with it.
            self._pending, self._owed = b"", None
            raise
        self._pending = reply.unconsumed()
        return reply.response()

    def _prepare(
        self, kind: str, payload: object, read: dict[str, object] | None
    ) -> tuple[bytes, _Reply]:
        """Check the payload and build the wire request and the reader of its reply."""
        if kind == "line":
            if not isinstance(payload, str):
                raise DeviceError("line payload must be a string")
            if "\n" in payload:
                # The device would take it for two commands and answer twice.
                raise DeviceError("line payload must not contain a line break")
            return payload.encode("utf-8") + DEFAULT_LINE_TERMINATOR, _LineReply()
        if kind == "raw":
            return _b64("payload", payload), _RawReply(_raw_assembler(read or {}))
        if kind == "frame":
            if not isinstance(payload, dict):
                raise DeviceError("frame payload must be an object {command_id, args}")
            command_id, args = payload.get("command_id"), payload.get("args", [])
            if not isinstance(command_id, int) or not isinstance(args, list):
                raise DeviceError("frame payload must be {command_id: int, args: [int]}")
            seq = self._seq
            try:
                request = encode_request(seq, command_id, args)
            except ValueError as e:
                raise DeviceError(f"bad frame payload: {e}") from e
            self._seq = (seq + 1) % _SEQ_MODULO
            return request, _FrameReply(seq)
        raise DeviceError(f"unknown command kind {kind!r} for {self.transport.url}")

    def settle(self) -> None:
        """Wait out a reply a timed-out command still owes, and report stale bytes as noise.

        run() does this before writing; a worker that calls it first can re-check a command's
        claim and deadline after the wait, right before run() puts bytes on the port.
        """
        try:
            stale = self._take_stale()
        except DeviceError:
            self._pending, self._owed = b"", None
            raise
        if stale:
            self._on_noise(stale)

    def _take_stale(self) -> bytes:
        """Everything received that no command is waiting for, late replies included."""
        stale = bytearray(self._pending)
        self._pending = b""
        owed, self._owed = self._owed, None
        if owed is not None:
            deadline = time.monotonic() + self._grace_s
            while not owed.complete(0.0):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                chunk = self.transport.read_some(remaining)
                stale += chunk
                owed.feed(chunk)
        stale += self.transport.drain()
        return bytes(stale)

    def _collect(self, reply: _Reply, deadline: float, timeout_s: float) -> None:
        """Feed received bytes to reply until it is complete; ReplyTimeout at the deadline."""
        last_rx = time.monotonic()
        while True:
            now = time.monotonic()
            if reply.complete(now - last_rx):
                return
            remaining = deadline - now
            if remaining <= 0:
                raise ReplyTimeout(
                    f"no complete reply from {self.transport.url} within {timeout_s:g} s"
                )
            wait = reply.wait_s(now - last_rx)
            chunk = self.transport.read_some(remaining if wait is None else min(wait, remaining))
            if chunk:
                last_rx = time.monotonic()
                noise = reply.feed(chunk)
                if noise:
                    self._on_noise(noise)


def _b64(field: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise DeviceError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise DeviceError(f"{field} is not valid base64: {e}") from e


def _raw_assembler(read: dict[str, object]) -> RawReplyAssembler:
    """Build the end-of-reply rules of a raw command from its `read` object."""
    until = read.get("until")
    try:
        return RawReplyAssembler(
            until=None if until is None else _b64("read.until", until),
            nbytes=_optional_int(read, "bytes"),
            idle_ms=_optional_int(read, "idle_ms"),
        )
    except ValueError as e:
        raise DeviceError(f"bad read rule: {e}") from e


def _optional_int(read: dict[str, object], name: str) -> int | None:
    value = read.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeviceError(f"read.{name} must be an integer")
    return value

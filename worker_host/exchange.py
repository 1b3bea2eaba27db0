"""One request and its reply on a transport, for each command kind a device speaks."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Protocol

from tasks.command_fit import kind_misfit, raw_line_bytes
from tasks.device_options import DeviceProfile
from tasks.errors import DeviceError, PortNotClean, ReplyTimeout
from worker_host.codecs import (
    DEFAULT_LINE_TERMINATOR,
    FRAME_DELIMITER,
    FrameSplitter,
    RawReplyAssembler,
    decode_line,
    decode_reply,
    encode_request,
)
from worker_host.port_state import DirtyPort, LateReplySink, NoiseSink, drain_until_clean
from worker_host.transport import Transport

# Sequence numbers are one byte on the wire.
_SEQ_MODULO = 256


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

    @property
    def data(self) -> bytes:
        """The reply's bytes."""
        return self._assembler.reply

    def response(self) -> dict[str, object]:
        return {"data": base64.b64encode(self._assembler.reply).decode("ascii")}


class _FrameReply:
    """The reply frame with one sequence number (None: any); other or bad frames are noise."""

    def __init__(self, seq: int | None) -> None:
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
            if reply is None or (self._seq is not None and reply.seq != self._seq):
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
    """Sends one command and collects its reply, on a port it keeps clean between commands.

    The port is dirty (`port_state.py`) from the moment a command is written until its whole
    reply has come and nothing after it, and whenever the port is opened; `settle` drains a
    dirty port before the next command goes out.
    """

    def __init__(
        self,
        transport: Transport,
        on_noise: NoiseSink,
        profile: DeviceProfile | None = None,
        device: str | None = None,
        on_late_reply: LateReplySink | None = None,
    ) -> None:
        self.transport = transport
        self.profile = profile or DeviceProfile()
        self.device = device or transport.url
        self._on_noise = on_noise
        self._on_late_reply: LateReplySink = on_late_reply or (lambda _command, _reply: None)
        self._seq = 0
        # Received bytes that belong to no command: a partial late reply, or what followed a
        # reply. Reported as noise before the next command is written.
        self._pending = b""
        self._dirty: DirtyPort | None = None

    @property
    def is_dirty(self) -> bool:
        """Whether the port must be drained before the next command is written."""
        return self._dirty is not None or not self.transport.is_open

    def check_ready(self) -> None:
        """Open the port if it is closed; DeviceError if it cannot be opened."""
        if not self.transport.is_open:
            self.transport.open()
            # A previous worker, or this one before an error, may have left a command on the
            # device whose answer is still to come.
            self._dirty = self._dirty or DirtyPort("the port was opened")

    def mark_dirty(self, cause: str) -> None:
        """Make the next command drain the port first: it was used outside a command."""
        self._dirty = self._dirty or DirtyPort(cause)

    def expect_late_reply(
        self, command_id: str, kind: str, read: dict[str, object] | None, within_s: float
    ) -> None:
        """Make the next command wait for the reply a command a previous worker left in flight
        may still get, for at least `within_s` (what is left of that command's timeout)."""
        try:
            owed: _Reply | None = self._reader(kind, read, seq=None)
        except DeviceError:
            owed = None
        cause = f"command {command_id} was left in flight by a previous worker"
        self._dirty = DirtyPort(cause, owed, command_id, max(0.0, within_s))

    def run(
        self,
        kind: str,
        payload: object,
        timeout_s: float,
        read: dict[str, object] | None = None,
        command_id: str | None = None,
    ) -> dict[str, object]:
        """Send one command of the given kind and return its response object (DESIGN §3)."""
        if not timeout_s > 0:
            raise DeviceError(f"timeout must be positive, got {timeout_s!r}")
        request, reply = self._prepare(kind, payload, read)
        self.settle()
        # Whatever the device sends from here until the whole reply is in may be this
        # command's: if anything cuts the exchange short, the port stays dirty.
        self._dirty = DirtyPort(f"command {command_id or kind} was cut short")
        try:
            self.transport.write(request)
            self._collect(reply, time.monotonic() + timeout_s, timeout_s)
        except ReplyTimeout:
            self._pending = reply.unconsumed()
            self._dirty = DirtyPort(f"command {command_id or kind} timed out", reply, command_id)
            raise
        except DeviceError:
            self._port_lost()
            raise
        self._pending = reply.unconsumed()
        self._dirty = self._dirt_after(kind, reply)
        return reply.response()

    def _dirt_after(self, kind: str, reply: _Reply) -> DirtyPort | None:
        """What a completed reply leaves: a clean port, unless the device may still be talking."""
        if self._pending:
            return DirtyPort("a reply followed by more bytes")
        # A raw reply ended by a count or a silence may have stopped mid-line.
        mid_line = isinstance(reply, _RawReply) and not reply.data.endswith(
            self.profile.line_ending[-1:]
        )
        if mid_line and self.profile.codec == "line":
            return DirtyPort("a raw reply that ended mid-line")
        return None

    def _port_lost(self) -> None:
        # The transport closed the port: whatever was buffered is gone with it, and reopening
        # it makes it dirty again.
        self._pending, self._dirty = b"", None

    def _prepare(
        self, kind: str, payload: object, read: dict[str, object] | None
    ) -> tuple[bytes, _Reply]:
        """Check the command fits the device and build the wire request and its reply reader."""
        misfit = kind_misfit(self.device, self.profile.codec, kind)
        if misfit is not None:
            raise DeviceError(misfit)
        if kind == "line":
            if not isinstance(payload, str):
                raise DeviceError("line payload must be a string")
            if "\n" in payload or "\r" in payload:
                # The device would take it for two commands and answer twice.
                raise DeviceError("line payload must not contain a line break")
            request = payload.encode("utf-8") + self.profile.line_ending
            return request, self._reader(kind, read, seq=None)
        if kind == "raw":
            request = _b64("payload", payload)
            if self.profile.codec == "line":
                try:
                    request = raw_line_bytes(self.device, self.profile, request)
                except ValueError as e:
                    raise DeviceError(str(e)) from None
            return request, self._reader(kind, read, seq=None)
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
            return request, self._reader(kind, read, seq)
        raise DeviceError(f"unknown command kind {kind!r} for {self.transport.url}")

    def _reader(self, kind: str, read: dict[str, object] | None, seq: int | None) -> _Reply:
        """The reader of one reply of this kind; a frame reader with no seq takes any reply."""
        if kind == "line":
            return _LineReply(self.profile.line_ending[-1:])
        if kind == "raw":
            return _RawReply(_raw_assembler(read or {}))
        if kind == "frame":
            return _FrameReply(seq)
        raise DeviceError(f"unknown command kind {kind!r} for {self.transport.url}")

    def settle(self) -> None:
        """Report stale bytes as noise and drain a dirty port until it is clean.

        run() does this before writing; a worker that calls it first can re-check a command's
        claim and deadline after the wait, right before run() puts bytes on the port. Raises
        PortNotClean if the device kept sending for the whole grace; the port stays dirty.
        """
        try:
            self.check_ready()
            stale, self._pending = self._pending, b""
            if stale:
                self._on_noise(stale)
            dirty, self._dirty = self._dirty, None
            if dirty is None:
                waiting = self.transport.drain()
                if waiting:
                    self._on_noise(waiting)
                return
            try:
                drain_until_clean(
                    self.transport,
                    dirty,
                    self.profile,
                    self.device,
                    self._on_noise,
                    self._on_late_reply,
                )
            except PortNotClean:
                self._dirty = DirtyPort("the device kept sending")
                raise
        except PortNotClean:
            raise
        except DeviceError:
            self._port_lost()
            raise

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

"""One request and its reply on a transport, for each command kind a device speaks."""

from __future__ import annotations

import time
from collections.abc import Callable

from tasks.command_fit import expects_no_reply, kind_misfit, raw_line_bytes
from tasks.device_options import DeviceProfile
from tasks.errors import DeviceError, PortNotClean, ReplyTimeout
from worker_host.codecs import encode_request
from worker_host.port_state import DirtyPort, LateReplySink, NoiseSink, drain_until_clean
from worker_host.reply_readers import (
    FrameReply,
    LineReply,
    NoReply,
    RawReply,
    Reply,
    b64_field,
    raw_assembler,
)
from worker_host.transport import Transport

# Sequence numbers are one byte on the wire.
_SEQ_MODULO = 256

# Told each chunk written to the port and the command it belongs to ("" for none).
TxSink = Callable[[bytes, str], None]


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
        on_tx: TxSink | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        """`on_tx`: told every chunk written. `on_idle`: told when the port is clean and no
        command is out, so whatever arrives until the next write answers nothing."""
        self.transport = transport
        self.profile = profile or DeviceProfile()
        self.device = device or transport.url
        self._on_noise = on_noise
        self._on_late_reply: LateReplySink = on_late_reply or (lambda _command, _reply: None)
        self._on_tx: TxSink = on_tx or (lambda _data, _command: None)
        self._on_idle = on_idle or (lambda: None)
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
            owed: Reply | None = self._reader(kind, read, seq=None)
        except DeviceError:
            owed = None
        cause = f"command {command_id} was left in flight by a previous worker"
        self._dirty = DirtyPort(cause, owed, command_id, max(0.0, within_s), reset=True)

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
            self._on_tx(request, command_id or "")
            self.transport.write(request)
            self._collect(reply, time.monotonic() + timeout_s, timeout_s)
        except ReplyTimeout:
            self._pending = reply.unconsumed()
            cause = f"command {command_id or kind} timed out"
            self._dirty = DirtyPort(cause, reply, command_id, reset=True)
            raise
        except DeviceError:
            self._port_lost()
            raise
        self._pending = reply.unconsumed()
        self._dirty = self._dirt_after(kind, reply)
        self._idle_if_clean()
        return reply.response()

    def _idle_if_clean(self) -> None:
        if self._dirty is None and not self._pending:
            self._on_idle()

    def _dirt_after(self, kind: str, reply: Reply) -> DirtyPort | None:
        """What a completed reply leaves: a clean port, unless the device may still be talking."""
        if isinstance(reply, NoReply):
            # Its answer, if the device gives one, must not be taken by the next command.
            return DirtyPort("a command that reads nothing")
        if self._pending:
            return DirtyPort("a reply followed by more bytes")
        # A raw reply ended by a count or a silence may have stopped mid-line.
        mid_line = isinstance(reply, RawReply) and not reply.data.endswith(
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
    ) -> tuple[bytes, Reply]:
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
            request = b64_field("payload", payload)
            if self.profile.codec == "line":
                try:
                    request = raw_line_bytes(self.device, self.profile, request)
                except ValueError as e:
                    raise DeviceError(str(e)) from None
            if expects_no_reply(read):
                return request, NoReply()
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

    def _reader(self, kind: str, read: dict[str, object] | None, seq: int | None) -> Reply:
        """The reader of one reply of this kind; a frame reader with no seq takes any reply."""
        if kind == "line":
            return LineReply(self.profile.line_ending[-1:])
        if kind == "raw":
            return RawReply(raw_assembler(read or {}))
        if kind == "frame":
            return FrameReply(seq)
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
                self._on_idle()
                return
            try:
                self._drain(dirty)
                if dirty.reset and self.profile.reset:
                    # The device may be stuck mid-command: put it back where commands start.
                    self._on_tx(self.profile.reset, "")
                    self.transport.write(self.profile.reset)
                    self._drain(DirtyPort("the reset sequence was written"))
                self._on_idle()
            except PortNotClean:
                self._dirty = DirtyPort("the device kept sending")
                raise
        except PortNotClean:
            raise
        except DeviceError:
            self._port_lost()
            raise

    def _drain(self, dirty: DirtyPort) -> None:
        drain_until_clean(
            self.transport, dirty, self.profile, self.device, self._on_noise, self._on_late_reply
        )

    def _collect(self, reply: Reply, deadline: float, timeout_s: float) -> None:
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

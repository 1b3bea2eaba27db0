"""Simulated serial devices on pseudo-terminals, for tests, demos and `hwq sim`."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import select
import signal
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from tasks.errors import DeviceError
from worker_host.codecs import (
    INT32_MAX,
    INT32_MIN,
    FrameRequest,
    FrameSplitter,
    LineFramer,
    cobs_decode,
    cobs_encode,
    decode_request,
    encode_reply,
)

SIM_KINDS = ("scpi", "echo", "frame")
SIM_FIRMWARE_VERSION = "0.1"
# Bytes taken from the pty per read; far more than one command, so one read is typical.
_READ_CHUNK = 4096
# Pause before reading again after the pty reported no host side (EIO).
_EIO_BACKOFF_S = 0.05
# How long stop() waits for serve_forever to notice it before closing the fds regardless.
_STOP_WAIT_S = 2.0
# MEAS:VOLT? readings: a supply near 1.2 V with some ripple.
_VOLT_CENTRE = 1.2
_VOLT_SPREAD = 0.05
# The status byte that starts a packet-mode read holding data.
_PACKET_DATA = bytes([termios.TIOCPKT_DATA])
# Frame device status codes; 0 is success (DESIGN §5).
STATUS_OK = 0
STATUS_UNKNOWN_COMMAND = 1
STATUS_BAD_ARGS = 2
# Frame device command ids.
CMD_PING, CMD_ECHO, CMD_SUM, CMD_SLEEP = 0, 1, 2, 3
# Answers like ECHO, but first sends a frame with a bad CRC and one with the wrong sequence
# number: noise a host must not take for the reply (DESIGN §5).
CMD_NOISY_ECHO = 4


class SimulatedDevice:
    """One device on a pseudo-terminal that answers like a `scpi`, `echo` or `frame` device.

    It runs once: start(), serve_forever() (often in a thread), stop().
    """

    def __init__(
        self,
        kind: str = "scpi",
        name: str = "sim0",
        log_path: Path | None = None,
        link_path: Path | None = None,
        banner: str | None = None,
        chatter_s: float | None = None,
    ) -> None:
        """`banner`: a line sent each time a host opens the port, as a device that boots then.
        `chatter_s`: send an unsolicited line this often, as a device reporting on its own does."""
        if kind not in SIM_KINDS:
            raise ValueError(f"unknown simulator kind {kind!r}; expected one of {SIM_KINDS}")
        if chatter_s is not None and not chatter_s > 0:
            raise ValueError(f"chatter interval must be positive, got {chatter_s!r}")
        self.banner = banner
        self.chatter_s = chatter_s
        self._chatter_count = 0
        self.kind = kind
        self.name = name
        self.log_path = log_path
        self.link_path = link_path
        self.path: str | None = None
        self._master: int | None = None
        # Held open so the pty keeps its settings and never reports EIO between host sessions.
        self._slave: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._log: TextIO | None = None
        self._stop_requested = False
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._random = random.Random()

    def start(self) -> str:
        """Open the pty and return the path a host opens; point link_path at it if given."""
        master, slave = os.openpty()
        # Raw mode turns echo off, so the device never reads back what it wrote, and keeps
        # the line discipline from rewriting bytes (CR/LF, XON/XOFF) of binary frames.
        tty.setraw(slave)
        # Packet mode: each read of the master starts with a status byte, which says when the
        # host flushed its input; pyserial does that as it opens the port, so the device
        # knows when to send its banner.
        fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._wake_r, self._wake_w = os.pipe()
        self.path = os.ttyname(slave)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a", encoding="utf-8")
        if self.link_path is not None:
            _point_link(self.link_path, self.path)
        return self.path

    def serve_forever(self) -> None:
        """Answer what arrives on the pty until stop() is called."""
        with self._lock:
            if self._stop_requested:
                return
            if self._master is None or self._wake_r is None:
                raise RuntimeError("start() the simulated device before serving")
            master, wake_r = self._master, self._wake_r
            self._idle.clear()
        try:
            framer, splitter = LineFramer(), FrameSplitter()
            handle: Callable[[bytes], None] = {
                "scpi": lambda data: self._handle_scpi(framer.feed(data)),
                "echo": self._handle_echo,
                "frame": lambda data: self._handle_frames(splitter.feed(data)),
            }[self.kind]
            next_chatter = None if self.chatter_s is None else time.monotonic() + self.chatter_s
            while not self._stop_requested:
                wait = None if next_chatter is None else max(0.0, next_chatter - time.monotonic())
                readable, _, _ = select.select([master, wake_r], [], [], wait)
                if wake_r in readable:
                    return
                if next_chatter is not None and time.monotonic() >= next_chatter:
                    next_chatter = self._chatter(next_chatter)
                if master not in readable:
                    continue
                try:
                    data = os.read(master, _READ_CHUNK)
                except BlockingIOError:
                    continue
                except OSError as e:
                    # EIO: no host side is open. The held slave fd should prevent it; if it
                    # happens anyway, back off instead of spinning or dying.
                    if e.errno != errno.EIO:
                        raise
                    if not self._pause(_EIO_BACKOFF_S):
                        return
                    continue
                if data[:1] != _PACKET_DATA:
                    if data[0] & termios.TIOCPKT_FLUSHREAD and self.banner is not None:
                        self._send(self.banner.encode("utf-8") + b"\n")
                    continue
                handle(data[1:])
        finally:
            self._idle.set()

    def stop(self) -> None:
        """Make serve_forever return promptly, then close the pty and the log."""
        with self._lock:
            self._request_stop()
        self._idle.wait(_STOP_WAIT_S)
        for name in ("_master", "_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._log is not None:
            self._log.close()
            self._log = None

    def serve_in_thread(self) -> threading.Thread:
        """Run serve_forever in a daemon thread and return that thread."""
        thread = threading.Thread(
            target=self.serve_forever, name=f"hwq-sim-{self.name}", daemon=True
        )
        thread.start()
        return thread

    def _request_stop(self) -> None:
        # Safe inside a signal handler: a flag and one write to the self-pipe.
        self._stop_requested = True
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    # --- device behaviour ---------------------------------------------------------------

    def _handle_scpi(self, lines: list[str]) -> None:
        for line in lines:
            self._record(line)
            reply = self._scpi_reply(line)
            if reply is None:
                return
            self._send(reply.encode("utf-8") + b"\n")

    def _scpi_reply(self, line: str) -> str | None:
        """The answer to one SCPI line; None if stop() interrupted it."""
        command, _, argument = line.partition(" ")
        keyword = command.upper()
        if keyword == "*IDN?" and not argument:
            return f"HWQ,SIM,{self.name},{SIM_FIRMWARE_VERSION}"
        if keyword == "ECHO":
            return argument
        if keyword == "SLEEP":
            try:
                millis = int(argument)
            except ValueError:
                millis = -1
            if millis < 0:
                return f"ERR bad argument: {line}"
            return "OK" if self._pause(millis / 1000.0) else None
        if keyword == "MEAS:VOLT?" and not argument:
            volts = self._random.uniform(_VOLT_CENTRE - _VOLT_SPREAD, _VOLT_CENTRE + _VOLT_SPREAD)
            return f"{volts:.6f}"
        return f"ERR unknown command: {line}"

    def _chatter(self, due: float) -> float:
        """Send one unsolicited line; when the next one is due."""
        self._chatter_count += 1
        self._send(f"# {self.name} chatter {self._chatter_count}\n".encode())
        assert self.chatter_s is not None
        return max(due + self.chatter_s, time.monotonic())

    def _handle_echo(self, data: bytes) -> None:
        self._record(repr(data))
        self._send(data)

    def _handle_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            try:
                request = decode_request(frame)
            except DeviceError as e:
                self._record(f"bad frame {frame.hex()} ({e})")
                continue
            self._record(repr(request))
            answer = self._frame_answer(request)
            if answer is None:
                return
            status, values = answer
            if request.command_id == CMD_NOISY_ECHO:
                bad_crc = bytearray(cobs_decode(encode_reply(request.seq, status, values)[:-1]))
                bad_crc[-1] ^= 0xFF
                self._send(cobs_encode(bytes(bad_crc)) + b"\x00")
                self._send(encode_reply((request.seq + 1) % 256, status, values))
            self._send(encode_reply(request.seq, status, values))

    def _frame_answer(self, request: FrameRequest) -> tuple[int, list[int]] | None:
        """Status and values answering one request frame; None if stop() interrupted it."""
        args = request.args
        if request.command_id == CMD_PING:
            return STATUS_OK, []
        if request.command_id in (CMD_ECHO, CMD_NOISY_ECHO):
            return STATUS_OK, args
        if request.command_id == CMD_SUM:
            return STATUS_OK, [_wrap_int32(sum(args))]
        if request.command_id == CMD_SLEEP:
            if len(args) != 1 or args[0] < 0:
                return STATUS_BAD_ARGS, []
            return (STATUS_OK, args) if self._pause(args[0] / 1000.0) else None
        return STATUS_UNKNOWN_COMMAND, []

    # --- plumbing -----------------------------------------------------------------------

    def _pause(self, seconds: float) -> bool:
        """Block like a busy instrument; False if stop() came first."""
        if self._wake_r is None:
            return False
        readable, _, _ = select.select([self._wake_r], [], [], seconds)
        return not readable

    def _send(self, data: bytes) -> None:
        """Write all of data to the host, waiting while its input queue is full."""
        assert self._master is not None and self._wake_r is not None
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                readable, _, _ = select.select([self._wake_r], [self._master], [])
                if readable:
                    return

    def _record(self, text: str) -> None:
        if self._log is None:
            return
        printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        self._log.write(f"{datetime.now(UTC).isoformat()} {printable}\n")
        self._log.flush()


def _wrap_int32(value: int) -> int:
    """Wrap like the int32 arithmetic of device firmware."""
    return (value - INT32_MIN) % (INT32_MAX - INT32_MIN + 1) + INT32_MIN


def _point_link(link: Path, target: str) -> None:
    """Atomically make link a symlink to target, replacing whatever link was."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def _remove_link(link: Path, target: str) -> None:
    """Remove link if it still points at target (a newer simulator may own it now)."""
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            link.unlink()


@contextlib.contextmanager
def running_device(
    kind: str = "scpi",
    name: str = "sim0",
    log_path: Path | None = None,
    link_path: Path | None = None,
) -> Iterator[SimulatedDevice]:
    """A simulated device served in a background thread for the duration of the block."""
    device = SimulatedDevice(kind, name, log_path, link_path)
    device.start()
    thread = device.serve_in_thread()
    try:
        yield device
    finally:
        device.stop()
        thread.join(_STOP_WAIT_S)


def run_simulator(
    kind: str,
    name: str,
    log_path: Path | None,
    link_path: Path | None,
    on_ready: Callable[[str], None],
    banner: str | None = None,
    chatter_s: float | None = None,
) -> None:
    """Serve one simulated device in the foreground until SIGINT or SIGTERM."""
    device = SimulatedDevice(kind, name, log_path, link_path, banner, chatter_s)
    path = device.start()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: device._request_stop()) for sig in stop_signals}
    try:
        on_ready(path)
        device.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        device.stop()
        if link_path is not None:
            _remove_link(link_path, path)

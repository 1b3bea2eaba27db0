"""How hwq talks to a device: bytes in and out through a `Transport`, of which a serial port
reached through any pyserial URL is one.

The exchange (what is said, `exchange.py` and `codecs.py`) and the port's hygiene
(`port_state.py`) use only the `Transport` interface, so a device reached another way (an
HTTP-polling device, a program sandbox, an in-memory device in tests) plugs in beside the
serial one. What the device's address names is `port_address.py`'s concern.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from typing import NoReturn, Protocol

import serial
from serial.tools.list_ports_common import ListPortInfo

from tasks.device_options import SerialLine
from tasks.errors import DeviceError
from worker_host.port_address import PortAddress

try:
    import termios
except ImportError:  # not a POSIX system: pyserial's own port code does not use it either
    termios = None  # type: ignore[assignment]

# What opening a port may raise. pyserial lets termios.error through when the terminal
# refuses its settings, as a port whose previous holder is still letting go can.
OPEN_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, ValueError) + (
    (termios.error,) if termios is not None else ()
)

DEFAULT_BAUDRATE = 115200
# Longest single blocking read. Changing a port's timeout reconfigures it (a termios call,
# an RFC 2217 negotiation), so read_some waits in slices of this fixed length and sets a
# shorter timeout only for the last stretch before its deadline.
READ_SLICE_S = 0.1
# A reader's slice on a port whose read can be cancelled (pyserial's local ports).
IDLE_READ_SLICE_S = 1.0


# The ports present now, for looking up a `usb:` address.
PortsLister = Callable[[], Iterable[ListPortInfo]]


class Transport(Protocol):
    """Bytes in and out of one device, opened lazily and kept open.

    A failure raises DeviceError and leaves the transport closed, so the next use reopens it.
    """

    # Where the device is, as messages name it.
    url: str

    @property
    def is_open(self) -> bool:
        """True while the connection is open."""
        ...

    def open(self) -> None:
        """Open the connection if it is not open yet; DeviceError if that fails."""
        ...

    def close(self) -> None:
        """Close the connection; closing a closed or broken one is not an error."""
        ...

    def write(self, data: bytes) -> None:
        """Send all of data."""
        ...

    def read_some(self, timeout: float) -> bytes:
        """Wait up to timeout seconds for at least one byte; return what is there, b"" if none."""
        ...

    def drain(self) -> bytes:
        """Return the bytes already received, without blocking."""
        ...


class SerialTransport:
    """Bytes in and out of one serial port; a failure closes it so the next use reopens it."""

    def __init__(
        self,
        address: str | PortAddress,
        baudrate: int = DEFAULT_BAUDRATE,
        line: SerialLine | None = None,
        ports_lister: PortsLister | None = None,
    ) -> None:
        """`ports_lister`: the ports a `usb:` address is looked up among (default: pyserial's)."""
        self.address = PortAddress.parse(address) if isinstance(address, str) else address
        self.url = str(self.address)
        self.baudrate = baudrate
        # Byte size, parity, stop bits and flow control: the device's options, or 8N1.
        self.line = line or SerialLine()
        # Where a path address led when the port was opened: a link that now leads elsewhere,
        # or nowhere, means the adapter behind the open port is gone.
        self.opened_path: str | None = None
        self.ports_lister = ports_lister
        self._port: serial.SerialBase | None = None

    @property
    def is_open(self) -> bool:
        """True while the port is open."""
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        """Open the port if it is not open yet; DeviceError naming the url if that fails."""
        if self.is_open:
            return
        try:
            # Looked up on every open: a USB adapter plugged back in may have another path.
            present = None if self.ports_lister is None else self.ports_lister()
            url = self.address.serial_url(present)
            # exclusive: two processes reading one port would each get half of every reply.
            self._port = serial.serial_for_url(
                url,
                baudrate=self.baudrate,
                bytesize=self.line.bytesize,
                parity=self.line.parity,
                stopbits=self.line.stopbits,
                rtscts=self.line.rtscts,
                xonxoff=self.line.xonxoff,
                # The reader's slice from the start: a later change would reconfigure the port.
                timeout=READ_SLICE_S if self.address.kind == "url" else IDLE_READ_SLICE_S,
                exclusive=True,
            )
        except OPEN_ERRORS as e:
            self._port = None
            raise DeviceError(f"cannot open serial port {self.url}: {e}") from e
        self.opened_path = None if self.address.kind == "url" else os.path.realpath(url)

    def lost(self) -> str | None:
        """Why the open port is gone (its adapter unplugged, its link moved), or None if it is
        still there or not open; a lost port is closed, so the next use reopens it."""
        port = self._port
        if port is None:
            return None
        try:
            # A terminal whose far end went away answers this ioctl with EIO.
            port.in_waiting  # noqa: B018
        except (serial.SerialException, OSError) as e:
            self.close()
            return f"serial port {self.url} is gone: {e}"
        if self.address.kind == "path" and os.path.realpath(self.url) != self.opened_path:
            self.close()
            return f"serial port {self.url} is gone: it no longer leads to {self.opened_path}"
        return None

    def close(self) -> None:
        """Close the port; closing a closed or broken port is not an error."""
        port, self._port = self._port, None
        if port is not None:
            # A port that vanished cannot be released any further.
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def write(self, data: bytes) -> None:
        """Send all of data."""
        port = self._ensure_open()
        try:
            port.write(data)
        except (serial.SerialException, OSError) as e:
            self._fail(f"write of {len(data)} bytes to {self.url} failed", e)

    def read_some(self, timeout: float) -> bytes:
        """Wait up to timeout seconds for at least one byte; return what is there, b"" if none."""
        port = self._ensure_open()
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                wait = min(READ_SLICE_S, remaining)
                if port.timeout != wait:
                    port.timeout = wait
                first: bytes = port.read(1)
                if first:
                    waiting = port.in_waiting
                    return first + port.read(waiting) if waiting else first
                if remaining <= READ_SLICE_S:
                    return b""
        except (serial.SerialException, OSError) as e:
            self._fail(f"read from {self.url} failed (timeout {timeout:g} s)", e)

    def read_slice(self) -> bytes:
        """Wait at most one read slice for at least one byte, leaving the port's timeout as it
        is: a reader that reads all the time calls this, and never reconfigures the port.

        A port whose read `cancel_read` can cut short waits the long slice: an idle device's
        reader then wakes once a second rather than ten times, and a close is not held up.
        """
        port = self._ensure_open()
        slice_s = IDLE_READ_SLICE_S if hasattr(port, "cancel_read") else READ_SLICE_S
        try:
            if port.timeout != slice_s:
                port.timeout = slice_s
            first: bytes = port.read(1)
            waiting = port.in_waiting if first else 0
            return first + port.read(waiting) if waiting else first
        except (serial.SerialException, OSError) as e:
            self._fail(f"read from {self.url} failed (timeout {slice_s:g} s)", e)

    def cancel_read(self) -> None:
        """End a read slice under way at once (it returns what it has, maybe nothing)."""
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            with contextlib.suppress(serial.SerialException, OSError):
                port.cancel_read()

    def drain(self) -> bytes:
        """Return the bytes already waiting in the port, without blocking."""
        port = self._ensure_open()
        try:
            waiting = port.in_waiting
            return port.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as e:
            self._fail(f"read from {self.url} failed", e)

    def _ensure_open(self) -> serial.SerialBase:
        self.open()
        assert self._port is not None
        return self._port

    def _fail(self, what: str, error: Exception) -> NoReturn:
        self.close()
        raise DeviceError(f"{what}: {error}") from error

"""What exists: the port a device's `address` names, apart from how hwq talks to it.

DESIGN §8: an address is any pyserial URL (`socket://h:p`, `rfc2217://h:p`, `loop://`), a
path (`/dev/ttyUSB0`, `/dev/serial/by-id/…`, `COM3`), or `usb:VID:PID[:SERIAL]`, which names
an adapter rather than a path and is looked up among the ports present each time the port is
opened, so renumbering (ttyUSB0 → ttyUSB1) breaks nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from tasks.errors import DeviceError

AddressKind = Literal["url", "path", "usb"]

# usb:VID:PID[:SERIAL], VID and PID as four hex digits each (as lsusb prints them).
_USB = re.compile(r"^usb:([0-9a-fA-F]{4}):([0-9a-fA-F]{4})(?::(.+))?$")
# A pyserial URL has a scheme; a Windows drive path (C:\…) does not count as one.
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


@dataclass(frozen=True)
class PortAddress:
    """A device's address, parsed: a pyserial URL, a port path, or a USB adapter's ids."""

    text: str
    kind: AddressKind
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None

    @classmethod
    def parse(cls, text: str) -> PortAddress:
        """The address `text` names; ValueError if it names nothing a port can be."""
        text = text.strip()
        if not text:
            raise ValueError("an address is empty")
        if text.lower().startswith("usb:"):
            match = _USB.match(text)
            if match is None:
                raise ValueError(f"{text!r} is not usb:VID:PID[:SERIAL] (VID, PID: 4 hex digits)")
            vid, pid, serial_number = match.groups()
            return cls(text, "usb", int(vid, 16), int(pid, 16), serial_number)
        return cls(text, "url" if _URL.match(text) else "path")

    def __str__(self) -> str:
        return self.text

    def serial_url(self, ports: Iterable[ListPortInfo] | None = None) -> str:
        """What pyserial opens for this address now; a USB adapter is looked up among `ports`
        (default: the ports this machine has). DeviceError if no adapter matches."""
        if self.kind != "usb":
            return self.text
        present = list(list_ports.comports() if ports is None else ports)
        matches = sorted(str(port.device) for port in present if self._is(port))
        if not matches:
            raise DeviceError(f"no serial port for {self.text}: that USB adapter is not plugged in")
        if len(matches) > 1:
            raise DeviceError(
                f"{self.text} matches {len(matches)} ports ({', '.join(matches)}); "
                "add the adapter's serial number to tell them apart"
            )
        return matches[0]

    def _is(self, port: ListPortInfo) -> bool:
        if port.vid != self.vid or port.pid != self.pid:
            return False
        return self.serial_number is None or port.serial_number == self.serial_number

"""What serial ports this machine has: pyserial's list plus simulated adapters in a ports folder.

A simulated USB adapter (`hwq sim --usb VID:PID:SERIAL --ports-dir DIR`) announces itself as
real ones do under /dev/serial/by-id: a link named for the adapter pointing at its terminal,
beside it a `<link>.json` sidecar with the identity the kernel would have read from the USB
descriptors. Listing both the same way lets `usb:VID:PID[:SERIAL]` addresses, the host's port
list and hot-plug be tested end to end without hardware.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

log = logging.getLogger("hwq.host")

# Where udev keeps the stable, per-adapter names of USB serial ports.
BY_ID_DIR = Path("/dev/serial/by-id")
SIDECAR_SUFFIX = ".json"
# Identity fields a sidecar may carry, copied onto the port as pyserial names them.
_SIDECAR_TEXT_FIELDS = (
    "serial_number",
    "manufacturer",
    "product",
    "description",
    "hwid",
    "location",
)


@dataclass(frozen=True)
class PortsView:
    """The ports one machine has now, with the by-id link of each when it has one."""

    ports: tuple[ListPortInfo, ...]
    by_id: dict[str, str]

    def records(self, bound: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The ports as the host publishes them; `bound`: real path → the hwq device on it."""
        bound = bound or {}
        return [
            {
                "path": port.device,
                "by_id": self.by_id.get(port.device),
                "description": port.description,
                "hwid": port.hwid,
                "vid": _hex4(port.vid),
                "pid": _hex4(port.pid),
                "serial_number": port.serial_number,
                "location": port.location,
                "manufacturer": port.manufacturer,
                "product": port.product,
                "device": bound.get(port.device),
            }
            for port in sorted(self.ports, key=lambda p: str(p.device))
        ]


def _hex4(value: int | None) -> str | None:
    return None if value is None else f"{value:04x}"


def discover(ports_dir: Path | None = None, by_id_dir: Path = BY_ID_DIR) -> PortsView:
    """Every serial port present now: pyserial's list, then the simulated adapters."""
    ports = list(list_ports.comports())
    by_id = _by_id_links(by_id_dir)
    if ports_dir is not None:
        simulated = simulated_ports(ports_dir)
        ports.extend(simulated)
        by_id.update({str(port.device): str(port.usb_info_link) for port in simulated})
    return PortsView(tuple(ports), by_id)


def _by_id_links(folder: Path) -> dict[str, str]:
    """Real path → its /dev/serial/by-id link."""
    links: dict[str, str] = {}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return links
    for entry in entries:
        if entry.is_symlink():
            links[os.path.realpath(entry.path)] = entry.path
    return links


class SimulatedPortInfo(ListPortInfo):  # type: ignore[misc]
    """A simulated adapter, shaped as pyserial describes a USB serial port."""

    usb_info_link: str = ""


def simulated_ports(ports_dir: Path) -> list[SimulatedPortInfo]:
    """The simulated adapters announced in `ports_dir` whose terminal is still there."""
    found: list[SimulatedPortInfo] = []
    try:
        sidecars = sorted(ports_dir.glob(f"*{SIDECAR_SUFFIX}"))
    except OSError:
        return found
    for sidecar in sidecars:
        link = sidecar.with_suffix("")
        port = _simulated_port(link, sidecar)
        if port is not None:
            found.append(port)
    return found


def _simulated_port(link: Path, sidecar: Path) -> SimulatedPortInfo | None:
    try:
        identity = json.loads(sidecar.read_text(encoding="utf-8"))
        target = os.path.realpath(link)
    except (OSError, ValueError):
        # Being unplugged right now: the link or the sidecar went first.
        return None
    if not isinstance(identity, dict) or not os.path.exists(target) or not link.is_symlink():
        return None
    port = SimulatedPortInfo(target)
    try:
        port.vid = int(str(identity.get("vid")), 16)
        port.pid = int(str(identity.get("pid")), 16)
    except ValueError:
        log.warning("simulated adapter has bad ids", extra={"port": str(link)})
        return None
    for name in _SIDECAR_TEXT_FIELDS:
        value = identity.get(name)
        if value is not None:
            setattr(port, name, str(value))
    port.usb_info_link = str(link)
    return port

"""A simulated USB serial adapter: a simulated device that can be unplugged and plugged back.

Plugged in, it announces itself in a ports folder as udev names real adapters under
/dev/serial/by-id: a link `usb-HWQ_Sim_<SERIAL>-if00-port0` to its pseudo-terminal, and
beside it `<link>.json` with what the USB descriptors would say (vid, pid, serial number,
manufacturer, product…), which the host agent reads (`port_discovery.py`). SIGUSR1 unplugs it:
the link and the sidecar go and the terminal closes, so a worker holding it sees its port die.
SIGUSR2 plugs it back: a new terminal, most likely under another /dev/pts/N.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker_host.simulator import SimulatedDevice, _point_link, _remove_link

_USB_SPEC = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4}):([A-Za-z0-9_.-]{1,64})$")
MANUFACTURER = "HWQ"
# The USB location real adapters report (bus-port); all simulated ones sit on one hub.
LOCATION = "1-1"


@dataclass(frozen=True)
class UsbIdentity:
    """What a USB adapter's descriptors say about it."""

    vid: str
    pid: str
    serial_number: str

    @classmethod
    def parse(cls, spec: str) -> UsbIdentity:
        """`VID:PID:SERIAL` (VID, PID: four hex digits); ValueError otherwise."""
        match = _USB_SPEC.match(spec.strip())
        if match is None:
            raise ValueError(
                f"{spec!r} is not VID:PID:SERIAL (VID and PID four hex digits, SERIAL letters, "
                "digits, '_', '.' or '-')"
            )
        vid, pid, serial_number = match.groups()
        return cls(vid.lower(), pid.lower(), serial_number)

    @property
    def link_name(self) -> str:
        """The by-id name udev would give the adapter."""
        return f"usb-{MANUFACTURER}_Sim_{self.serial_number}-if00-port0"

    def sidecar(self, kind: str) -> dict[str, str]:
        """The identity as the host agent reads it."""
        return {
            "vid": self.vid,
            "pid": self.pid,
            "serial_number": self.serial_number,
            "manufacturer": MANUFACTURER,
            "product": f"Sim {kind}",
            "description": f"{MANUFACTURER} Sim {kind} ({self.serial_number})",
            "hwid": f"USB VID:PID={self.vid}:{self.pid} SER={self.serial_number} "
            f"LOCATION={LOCATION}",
            "location": LOCATION,
        }


class SimulatedUsbAdapter:
    """A simulated device behind a USB adapter that can be unplugged and plugged back."""

    def __init__(
        self,
        kind: str,
        name: str,
        identity: UsbIdentity,
        ports_dir: Path,
        log_path: Path | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.identity = identity
        self.link = ports_dir / identity.link_name
        self.sidecar = self.link.with_name(self.link.name + ".json")
        self.log_path = log_path
        self.device: SimulatedDevice | None = None
        self._thread: threading.Thread | None = None

    @property
    def plugged(self) -> bool:
        """Whether the adapter is plugged in."""
        return self.device is not None

    def plug(self) -> str:
        """Plug in: a new pseudo-terminal, announced in the ports folder; returns its path."""
        if self.device is not None and self.device.path is not None:
            return self.device.path
        device = SimulatedDevice(self.kind, self.name, self.log_path)
        path = device.start()
        self._thread = device.serve_in_thread()
        self.device = device
        # The link first: a sidecar is only read once its link leads somewhere.
        _point_link(self.link, path)
        temporary = self.sidecar.with_name(f".{self.sidecar.name}.tmp")
        temporary.write_text(json.dumps(self.identity.sidecar(self.kind)), encoding="utf-8")
        temporary.replace(self.sidecar)
        return path

    def unplug(self) -> None:
        """Unplug: the announcement goes and the terminal closes under whoever holds it."""
        device, self.device = self.device, None
        if device is None:
            return
        self.sidecar.unlink(missing_ok=True)
        if device.path is not None:
            _remove_link(self.link, device.path)
        device.stop()
        if self._thread is not None:
            self._thread.join(2.0)


def run_usb_adapter(adapter: SimulatedUsbAdapter, on_plugged: Callable[[str], None]) -> None:
    """Serve the adapter in the foreground until SIGINT or SIGTERM; SIGUSR1 unplugs it and
    SIGUSR2 plugs it back."""
    # SimpleQueue's put is safe in a signal handler (it never waits on a lock the interrupted
    # code may hold).
    requests: queue.SimpleQueue[str] = queue.SimpleQueue()
    actions = {
        signal.SIGUSR1: "unplug",
        signal.SIGUSR2: "plug",
        signal.SIGTERM: "stop",
        signal.SIGINT: "stop",
    }
    previous = {
        sig: signal.signal(
            sig, lambda signum, _frame: requests.put(actions[signal.Signals(signum)])
        )
        for sig in actions
    }
    try:
        on_plugged(adapter.plug())
        while True:
            try:
                request = requests.get(timeout=1.0)
            except queue.Empty:
                continue
            if request == "stop":
                return
            if request == "unplug":
                adapter.unplug()
            elif not adapter.plugged:
                on_plugged(adapter.plug())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        adapter.unplug()

"""Which port a device is on: its address against what a host agent announced."""

from __future__ import annotations

import pytest

from tasks.host_reads import PORT_FIELDS, address_names_port, bind_ports

PORT = {"path": "/dev/ttyUSB1", "by_id": "/dev/serial/by-id/usb-FTDI_A10K3-if00-port0",
        "vid": "0403", "pid": "6001", "serial_number": "A10K3", "device": None}  # fmt: skip


@pytest.mark.parametrize(
    ("address", "matches"),
    [
        ("/dev/ttyUSB1", True),
        ("/dev/serial/by-id/usb-FTDI_A10K3-if00-port0", True),
        ("usb:0403:6001", True),
        ("usb:0403:6001:A10K3", True),
        ("usb:0403:6001:a10k3", False),
        ("usb:0403:6001:OTHER", False),
        ("usb:0403:6015", False),
        ("/dev/ttyUSB0", False),
        ("loop://", False),
        (None, False),
    ],
)
def test_an_address_names_a_port_by_path_link_or_adapter(
    address: str | None, matches: bool
) -> None:
    assert address_names_port(address, PORT) is matches


def test_the_agents_binding_wins_and_unbound_ports_get_a_matching_device() -> None:
    devices = [{"name": "dmm", "address": "usb:0403:6001:A10K3"}]
    assert bind_ports([PORT], devices)[0]["device"] == "dmm"
    assert bind_ports([{**PORT, "device": "psu"}], devices)[0]["device"] == "psu"
    assert bind_ports([PORT], [])[0]["device"] is None
    # Missing fields read as null, unknown ones are left out, an entry with no path is no port.
    sparse = bind_ports([{"path": "/dev/ttyS0", "extra": 1}, {"vid": "0403"}], devices)
    assert sparse == [{**dict.fromkeys(PORT_FIELDS), "path": "/dev/ttyS0"}]

"""What a device's address names: a pyserial URL, a path, or a USB adapter found by its ids."""

from __future__ import annotations

import pytest
from serial.tools.list_ports_common import ListPortInfo

from tasks.errors import DeviceError
from worker_host.port_address import PortAddress
from worker_host.transport import SerialTransport


def _usb_port(device: str, vid: int, pid: int, serial_number: str | None = None) -> ListPortInfo:
    port = ListPortInfo(device, skip_link_detection=True)
    port.vid, port.pid, port.serial_number = vid, pid, serial_number
    return port


PORTS = [
    _usb_port("/dev/ttyUSB1", 0x0403, 0x6001, "A1"),
    _usb_port("/dev/ttyUSB0", 0x0403, 0x6001, "B2"),
    _usb_port("/dev/ttyACM0", 0x2341, 0x0043),
]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("loop://", "url"),
        ("socket://10.0.0.5:4001", "url"),
        ("rfc2217://lab:2217", "url"),
        ("/dev/ttyUSB0", "path"),
        ("/dev/serial/by-id/usb-FTDI_FT232R_A1-if00-port0", "path"),
        ("COM3", "path"),
        ("usb:0403:6001", "usb"),
    ],
)
def test_each_form_of_address_is_told_apart(text: str, kind: str) -> None:
    address = PortAddress.parse(text)
    assert address.kind == kind and str(address) == text


def test_a_url_or_path_is_opened_as_written() -> None:
    for text in ("loop://", "/dev/ttyS0"):
        assert PortAddress.parse(text).serial_url(PORTS) == text


def test_a_usb_address_finds_its_adapter_wherever_it_is_now() -> None:
    assert PortAddress.parse("usb:2341:0043").serial_url(PORTS) == "/dev/ttyACM0"
    assert PortAddress.parse("usb:0403:6001:B2").serial_url(PORTS) == "/dev/ttyUSB0"
    # Renumbered after a re-plug: the same address finds the new path.
    moved = [_usb_port("/dev/ttyACM3", 0x2341, 0x0043)]
    assert PortAddress.parse("usb:2341:0043").serial_url(moved) == "/dev/ttyACM3"


def test_a_usb_address_that_finds_none_or_several_names_the_problem() -> None:
    with pytest.raises(DeviceError, match="not plugged in"):
        PortAddress.parse("usb:1234:abcd").serial_url(PORTS)
    with pytest.raises(DeviceError, match="serial number"):
        PortAddress.parse("usb:0403:6001").serial_url(PORTS)


@pytest.mark.parametrize("text", ["", "  ", "usb:0403", "usb:xyz1:6001", "usb:403:6001"])
def test_an_address_that_names_nothing_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PortAddress.parse(text)


def test_a_serial_transport_opens_what_its_address_names() -> None:
    transport = SerialTransport(PortAddress.parse("loop://"))
    try:
        transport.write(b"ping")
        assert transport.read_some(1.0) == b"ping"
        assert transport.url == "loop://"
    finally:
        transport.close()

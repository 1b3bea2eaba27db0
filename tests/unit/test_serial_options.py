"""Serial line options: checked by name, and handed to pyserial when the port opens."""

from __future__ import annotations

from typing import Any

import pytest
import serial

from tasks.device_options import OptionError, SerialLine, check_options, serial_line
from tasks.host_reads import address_names_port, bind_ports
from worker_host.device_runtime import serial_transport
from worker_host.transport import SerialTransport


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"bytesize": 9}, "bytesize"),
        ({"bytesize": True}, "bytesize"),
        ({"bytesize": "8"}, "bytesize"),
        ({"parity": "even"}, "parity"),
        ({"parity": "n"}, "parity"),
        ({"stopbits": 3}, "stopbits"),
        ({"stopbits": "2"}, "stopbits"),
        ({"rtscts": 1}, "rtscts"),
        ({"xonxoff": "yes"}, "xonxoff"),
        ({"python": "true"}, "python"),
        ({"line_ending": "\n\r"}, "line_ending"),
    ],
)
def test_a_bad_option_is_refused_by_name(options: dict[str, Any], named: str) -> None:
    with pytest.raises(OptionError) as caught:
        check_options(options)
    assert caught.value.option == named


def test_good_options_pass_and_unknown_ones_are_kept() -> None:
    options = {"bytesize": 7, "parity": "E", "stopbits": 1.5, "rtscts": True, "xonxoff": False,
               "line_ending": "\r\n", "python": True, "note": "bench 2"}  # fmt: skip
    assert check_options(options) == options
    assert serial_line(options) == SerialLine(7, "E", 1.5, True, False)
    assert serial_line({}) == SerialLine(8, "N", 1, False, False)


def test_the_line_settings_reach_pyserial_when_the_port_opens() -> None:
    options = {"bytesize": 7, "parity": "E", "stopbits": 2, "xonxoff": True}
    config = {"name": "dmm", "address": "loop://", "baudrate": 9600, "options": options}
    transport = serial_transport(config)
    assert isinstance(transport, SerialTransport)
    transport.open()
    try:
        port = transport._port
        assert port is not None
        assert (port.baudrate, port.bytesize, port.parity, port.stopbits) == (
            9600, serial.SEVENBITS, serial.PARITY_EVEN, serial.STOPBITS_TWO
        )  # fmt: skip
        assert port.xonxoff is True and port.rtscts is False
        transport.write(b"*IDN?\n")
        assert transport.read_some(1.0) == b"*IDN?\n"
    finally:
        transport.close()


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

"""Serial line options: checked by name, and handed to pyserial when the port opens."""

from __future__ import annotations

from typing import Any

import pytest
import serial

from tasks.device_options import OptionError, SerialLine, check_options, serial_line
from worker_host.device_port import serial_transport
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

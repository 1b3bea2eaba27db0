"""How a device speaks and how its port is kept clean: its codec and the options that tune it.

The registry's `options` are free-form JSON; the ones named here are checked when a device is
registered or changed, and read by the API (does a command fit?) and the device worker (how
long to drain a port that may still hold someone else's bytes).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

# Line endings a line device may use (DESIGN §3); the first is what a device gets by default.
LINE_ENDINGS = {"\n": b"\n", "\r\n": b"\r\n", "\r": b"\r"}
DEFAULT_LINE_ENDING = "\n"
# How long the line must stay quiet before a dirty port counts as clean: long enough for the
# gaps inside one reply of a slow instrument, short enough to cost little after a timeout.
DEFAULT_IDLE_MS = 100
MAX_IDLE_MS = 60_000
# Longest wait for a dirty port to come clean before the next command is failed instead of
# written. It covers a reply that comes some seconds after its command timed out.
DEFAULT_SETTLE_S = 10.0
# As long as the longest command timeout (DESIGN §3).
MAX_SETTLE_S = 300.0

CODECS = ("line", "raw", "frame")
# Longest reset sequence (options.reset): a few commands' worth, not a transfer.
MAX_RESET_BYTES = 1024
_RESET_SHAPE = 'must be text, or {"base64": "…"}, of 1 to 1024 bytes'

# Serial line settings beyond the baud rate, with pyserial's spellings: parity is one letter
# (None, Even, Odd, Mark, Space), as pyserial and most instrument manuals write it.
BYTESIZES = (5, 6, 7, 8)
PARITIES = ("N", "E", "O", "M", "S")
STOPBITS = (1, 1.5, 2)
# Options that are true or false: flow control, and what the device allows.
FLAG_OPTIONS = ("rtscts", "xonxoff", "raw_multiline", "python")
# The options that decide how a port is opened; a change to one reopens it.
SERIAL_LINE_OPTIONS = ("bytesize", "parity", "stopbits", "rtscts", "xonxoff")


class OptionError(ValueError):
    """A device option has a value hwq cannot use; `option` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option} {message}")
        self.option = option


@dataclass(frozen=True)
class SerialLine:
    """How the port is opened besides its baud rate: pyserial's keyword arguments."""

    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False


@dataclass(frozen=True)
class DeviceProfile:
    """A device's codec and the options that decide how its port is written and drained."""

    codec: str = "line"
    line_ending: bytes = LINE_ENDINGS[DEFAULT_LINE_ENDING]
    idle_s: float = DEFAULT_IDLE_MS / 1000.0
    settle_s: float = DEFAULT_SETTLE_S
    # Whether one raw payload may carry several lines to a line device.
    raw_multiline: bool = False
    # Written after a timeout, once the port has drained, to bring the device back to where
    # commands start (options.reset); None: nothing is written.
    reset: bytes | None = None


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return `options` if the ones hwq knows have valid values; OptionError naming one if not."""
    ending = options.get("line_ending", DEFAULT_LINE_ENDING)
    if ending not in LINE_ENDINGS:
        raise OptionError("line_ending", 'must be "\\n", "\\r\\n" or "\\r"')
    _number(options, "idle_ms", DEFAULT_IDLE_MS, 1, MAX_IDLE_MS, integer=True)
    _number(options, "settle_s", DEFAULT_SETTLE_S, 0, MAX_SETTLE_S, integer=False)
    for flag in FLAG_OPTIONS:
        if not isinstance(options.get(flag, False), bool):
            raise OptionError(flag, "must be true or false")
    serial_line(options)
    reset_bytes(options)
    return options


def serial_line(options: dict[str, Any]) -> SerialLine:
    """The serial line settings of a device's options; OptionError naming a bad one."""
    line = SerialLine()
    bytesize = options.get("bytesize", line.bytesize)
    if isinstance(bytesize, bool) or bytesize not in BYTESIZES:
        raise OptionError("bytesize", f"must be 5, 6, 7 or 8, got {bytesize!r}")
    parity = options.get("parity", line.parity)
    if parity not in PARITIES:
        letters = '"N", "E", "O", "M" or "S" (none, even, odd, mark, space)'
        raise OptionError("parity", f"must be {letters}, got {parity!r}")
    stopbits = options.get("stopbits", line.stopbits)
    if isinstance(stopbits, bool) or stopbits not in STOPBITS:
        raise OptionError("stopbits", f"must be 1, 1.5 or 2, got {stopbits!r}")
    return SerialLine(
        bytesize=int(bytesize),
        parity=str(parity),
        stopbits=float(stopbits) if stopbits == 1.5 else int(stopbits),
        rtscts=bool(options.get("rtscts", False)),
        xonxoff=bool(options.get("xonxoff", False)),
    )


def reset_bytes(options: dict[str, Any]) -> bytes | None:
    """The device's reset sequence: `reset` as UTF-8 text or `{"base64": …}`; ValueError if bad."""
    value = options.get("reset")
    if value is None:
        return None
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            data = base64.b64decode(value["base64"], validate=True)
        except binascii.Error:
            raise OptionError("reset", f"{_RESET_SHAPE}; its base64 is not valid") from None
    else:
        raise OptionError("reset", _RESET_SHAPE)
    if not 1 <= len(data) <= MAX_RESET_BYTES:
        raise OptionError("reset", _RESET_SHAPE)
    return data


def device_profile(config: dict[str, Any]) -> DeviceProfile:
    """The profile of a device from its settings; ValueError naming a bad codec or option."""
    codec = config.get("codec") or "line"
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
    options = check_options(config.get("options") or {})
    return DeviceProfile(
        codec=codec,
        line_ending=LINE_ENDINGS[options.get("line_ending", DEFAULT_LINE_ENDING)],
        idle_s=_number(options, "idle_ms", DEFAULT_IDLE_MS, 1, MAX_IDLE_MS, integer=True) / 1000,
        settle_s=_number(options, "settle_s", DEFAULT_SETTLE_S, 0, MAX_SETTLE_S, integer=False),
        raw_multiline=bool(options.get("raw_multiline", False)),
        reset=reset_bytes(options),
    )


def _number(
    options: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool
) -> float:
    value = options.get(name, default)
    number = isinstance(value, int) or (isinstance(value, float) and not integer)
    if isinstance(value, bool) or not number or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise OptionError(name, f"must be {what} from {low:g} to {high:g}, got {value!r}")
    return float(value)

"""How a device speaks and how its port is kept clean: its codec and the options that tune it.

The registry's `options` are free-form JSON; the ones named here are checked when a device is
registered or changed, and read by the API (does a command fit?) and the device worker (how
long to drain a port that may still hold someone else's bytes).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class DeviceProfile:
    """A device's codec and the options that decide how its port is written and drained."""

    codec: str = "line"
    line_ending: bytes = LINE_ENDINGS[DEFAULT_LINE_ENDING]
    idle_s: float = DEFAULT_IDLE_MS / 1000.0
    settle_s: float = DEFAULT_SETTLE_S
    # Whether one raw payload may carry several lines to a line device.
    raw_multiline: bool = False


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return `options` if the ones hwq knows have valid values; ValueError naming one if not."""
    ending = options.get("line_ending", DEFAULT_LINE_ENDING)
    if ending not in LINE_ENDINGS:
        raise ValueError('line_ending must be "\\n", "\\r\\n" or "\\r"')
    _number(options, "idle_ms", DEFAULT_IDLE_MS, 1, MAX_IDLE_MS, integer=True)
    _number(options, "settle_s", DEFAULT_SETTLE_S, 0, MAX_SETTLE_S, integer=False)
    for name in ("raw_multiline", "python"):
        if not isinstance(options.get(name, False), bool):
            raise ValueError(f"{name} must be true or false")
    return options


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
    )


def _number(
    options: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool
) -> float:
    value = options.get(name, default)
    number = isinstance(value, int) or (isinstance(value, float) and not integer)
    if isinstance(value, bool) or not number or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} from {low:g} to {high:g}, got {value!r}")
    return float(value)

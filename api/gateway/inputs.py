"""What each Socket.IO event must carry, checked before anything is done.

The ancestor's clients send plain objects with its field names (`command-id` included); a
field that is missing or wrong is refused with an error naming it, never dropped in silence.
"""

from __future__ import annotations

import base64
from typing import Any

from api.schemas import INT32_MAX, INT32_MIN, MAX_FRAME_ARGS, MAX_TIMEOUT_S, MIN_TIMEOUT_S
from tasks.errors import ValidationFailed
from tasks.queues import DEVICE_NAME_PATTERN

# Longest raw payload one event may carry; a raw command is an instrument command, not a
# file transfer, and the whole payload sits in Redis until the worker writes it.
MAX_RAW_BYTES = 65_536
# Longest device address (a pyserial URL or a path).
MAX_ADDRESS_CHARS = 1024
# A frame command's timeout when the client names none, as in the HTTP API (DESIGN §3).
DEFAULT_TIMEOUT_S = 5.0
CODECS = ("line", "raw", "frame")


def refuse(field: str, message: str) -> ValidationFailed:
    """The error for one bad field, its name leading the message."""
    return ValidationFailed(f"{field}: {message}", [{"field": field, "message": message}])


def fields_of(data: object, expected: tuple[str, ...]) -> dict[str, Any]:
    """The event's data as an object; refused when it is anything else."""
    if not isinstance(data, dict):
        names = ", ".join(expected)
        raise refuse("data", f"expected an object with the fields {names}")
    return data


def device_name(data: dict[str, Any], field: str = "name") -> str:
    """A device name: lower-case letters, digits, `-` and `_`, at most 63 characters."""
    value = data.get(field)
    if value is None:
        raise refuse(field, "is required")
    if not isinstance(value, str) or not DEVICE_NAME_PATTERN.match(value):
        raise refuse(field, "must be a device name matching ^[a-z0-9][a-z0-9_-]{0,62}$")
    return value


def address(data: dict[str, Any]) -> str:
    """A port address: a pyserial URL, a path, or usb:VID:PID[:SERIAL]."""
    value = data.get("address")
    if value is None:
        raise refuse("address", "is required")
    if not isinstance(value, str) or not value.strip():
        raise refuse("address", "must be a non-empty string (a port path or pyserial URL)")
    if len(value) > MAX_ADDRESS_CHARS or any(ch in value for ch in "\r\n\x00"):
        raise refuse("address", f"must be one line of at most {MAX_ADDRESS_CHARS} characters")
    return value


def optional_codec(data: dict[str, Any]) -> str | None:
    """The codec of a device registered by activate-connection, if the client names one."""
    value = data.get("codec")
    if value is None:
        return None
    if value not in CODECS:
        raise refuse("codec", f"must be one of {', '.join(CODECS)}")
    return str(value)


def optional_baudrate(data: dict[str, Any]) -> int | None:
    """The baud rate of a device registered by activate-connection, if the client names one."""
    value = data.get("baudrate")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 300 <= value <= 4_000_000:
        raise refuse("baudrate", "must be a whole number from 300 to 4000000")
    return value


def raw_payload(data: dict[str, Any]) -> bytes:
    """send-raw's payload: bytes (a Buffer arrives so), a list of byte values, or text."""
    value = data.get("payload")
    if value is None:
        raise refuse("payload", "is required")
    if isinstance(value, bytes | bytearray):
        payload = bytes(value)
    elif isinstance(value, str):
        payload = value.encode("utf-8")
    elif isinstance(value, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
            raise refuse("payload", "a list payload must hold byte values, whole numbers 0-255")
        payload = bytes(value)
    else:
        raise refuse("payload", "must be bytes (a Buffer), a list of byte values, or a string")
    if not payload:
        raise refuse("payload", "must hold at least one byte")
    if len(payload) > MAX_RAW_BYTES:
        raise refuse("payload", f"must be at most {MAX_RAW_BYTES} bytes")
    return payload


def raw_submission(payload: bytes) -> dict[str, Any]:
    """The raw command send-raw queues: write the bytes, expect nothing back (`read: null`)."""
    return {"kind": "raw", "payload": base64.b64encode(payload).decode("ascii"), "read": None}


def frame_submission(data: dict[str, Any]) -> dict[str, Any]:
    """The frame command send-command queues, from `command-id`, `args` and `timeout_s`."""
    command_id = data.get("command-id")
    if command_id is None:
        raise refuse("command-id", "is required")
    if not _whole(command_id) or not 0 <= command_id <= 255:
        raise refuse("command-id", "must be a whole number from 0 to 255")
    args = data.get("args", [])
    if not isinstance(args, list):
        raise refuse("args", "must be a list of whole numbers")
    if len(args) > MAX_FRAME_ARGS:
        raise refuse("args", f"may hold at most {MAX_FRAME_ARGS} numbers")
    for index, arg in enumerate(args):
        if not _whole(arg) or not INT32_MIN <= arg <= INT32_MAX:
            raise refuse(f"args[{index}]", "must be a whole number that fits in int32")
    timeout_s = data.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S
    ):
        raise refuse("timeout_s", f"must be a number from {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S}")
    return {
        "kind": "frame",
        "payload": {"command_id": int(command_id), "args": [int(a) for a in args]},
        "timeout_s": float(timeout_s),
    }


def _whole(value: object) -> bool:
    # JSON has one kind of number: 7.0 is 7, as the HTTP API agrees; true is not 1.
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)

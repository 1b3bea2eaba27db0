"""Whether a command fits its device (DESIGN §3): checked by the API at submission, and by the
device worker again before any byte goes out, since a device's codec may change in between.
"""

from __future__ import annotations

import base64
from typing import Any

from tasks.device_options import DeviceProfile, device_profile
from tasks.errors import ValidationFailed

# The kinds each codec carries; raw goes anywhere, python runs beside any device allowing it.
KINDS_BY_CODEC = {
    "line": ("line", "raw", "python"),
    "raw": ("line", "raw", "python"),
    "frame": ("frame", "raw", "python"),
}
# Bytes that end a line on some device; inside one raw payload they would make two commands.
_LINE_BREAKS = (b"\r\n", b"\n", b"\r")
# What a raw command submitted with `read: null` keeps as its `read`: it writes and expects
# nothing (DESIGN §3). A command with no `read` at all reads a reply up to a silence.
WRITE_ONLY_READ = {"expect": "nothing"}


def expects_no_reply(read: object) -> bool:
    """Whether a raw command's `read` says it writes and expects nothing."""
    return read == WRITE_ONLY_READ


def kind_misfit(device: str, codec: str, kind: str) -> str | None:
    """Why a command of this kind cannot go to the device, or None if it can."""
    if kind in KINDS_BY_CODEC.get(codec, ()):
        return None
    accepted = ", ".join(KINDS_BY_CODEC.get(codec, ()))
    return f"device {device} speaks codec {codec}: it takes {accepted} commands, not {kind}"


def raw_line_bytes(device: str, profile: DeviceProfile, payload: bytes) -> bytes:
    """What a raw payload puts on a line device: one line, ended by the device's terminator.

    A payload may end with a line break; one that does not gets the terminator, so no partial
    line is left in the device to be joined to the next user's command. A line break inside
    would make two commands, whose second reply the next command would take for its own:
    ValueError, unless the device's options allow several lines.
    """
    body = payload
    for ending in _LINE_BREAKS:
        if body.endswith(ending):
            body = body[: -len(ending)]
            break
    if not profile.raw_multiline and any(brk in body for brk in (b"\n", b"\r")):
        raise ValueError(
            f"device {device} is a line device: a raw payload may end with a line break but "
            "not hold one inside (one command, one line; options.raw_multiline allows more)"
        )
    return payload if body != payload else payload + profile.line_ending


def check_fits_device(device: str, config: dict[str, Any], request: dict[str, Any]) -> None:
    """ValidationFailed unless the command's kind fits the device's codec (DESIGN §3), and a
    raw payload to a line device is one line."""
    kind = request["kind"]
    try:
        profile = device_profile(config)
    except ValueError as e:
        raise ValidationFailed(f"device {device!r} has a bad setting ({e}); fix it first") from None
    misfit = kind_misfit(device, profile.codec, kind)
    if misfit is not None:
        raise ValidationFailed(misfit, [{"field": "kind", "message": misfit}])
    if kind == "raw" and profile.codec == "line":
        try:
            raw_line_bytes(device, profile, base64.b64decode(request["payload"]))
        except ValueError as e:
            raise ValidationFailed(str(e), [{"field": "payload", "message": str(e)}]) from None


def allows_python(config: dict[str, Any]) -> bool:
    """Whether the device's options allow python commands (`python: true`)."""
    return (config.get("options") or {}).get("python") is True

"""Why a command is still queued, in the words of its device's presence.

A command waits in its queue whenever its device cannot take it: no worker serves the
device, its port is gone, it was deactivated, or its worker kept crashing. `hwq run` names
which, and what ends the wait, instead of only saying the command is still queued.
"""

from __future__ import annotations

from typing import Any


def why_still_queued(device: dict[str, Any], command_id: str, wait_s: float) -> str | None:
    """The message for a command still queued after `wait_s` on a device that cannot take it;
    None while the device is online (the command is merely behind others)."""
    name = device.get("name", "?")
    presence = device.get("presence")
    error = _first_line(device.get("error"))
    if presence == "port-missing":
        cause = f"device {name} is port-missing: its port is gone or cannot be opened" + (
            f" ({error})" if error else ""
        )
        ends = "once its worker opens the port again (the adapter plugged back in, the port freed)"
    elif presence == "inactive":
        cause = f"device {name} is inactive: it was deactivated"
        ends = f"once it is activated again (`hwq devices activate {name}`)"
    elif presence == "failed":
        cause = f"device {name} failed: its worker kept crashing" + (f" ({error})" if error else "")
        ends = (
            f"once its worker starts again (see `hwq devices show {name}`, then "
            f"`hwq devices activate {name}` or change its settings)"
        )
    elif presence == "offline" or (presence is None and device.get("online") is False):
        if device.get("transport") == "http-poll":
            cause = f"device {name} is offline: no agent polls for it (`hwq poll-device {name}`)"
            ends = "once the device polls"
        else:
            cause = f"device {name} is offline: no worker serves it"
            ends = "once the device's worker starts"
    else:
        return None
    return (
        f"{cause}, so command {command_id} is still queued after {wait_s:g} s. It runs {ends}; "
        f"`hwq commands cancel {command_id}` drops it"
    )


def _first_line(error: object) -> str:
    """The first line of an error (a failure's carries the worker's log lines after it)."""
    if not isinstance(error, str):
        return ""
    return error.strip().splitlines()[0] if error.strip() else ""

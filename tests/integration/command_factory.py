"""Commands for the integration tests: values shaped as the API stores them."""

from __future__ import annotations

import uuid
from typing import Any

from tasks.command_record import utc_now_iso
from tasks.live_store import LiveStore


def command_values(device: str = "dev0", **extra: Any) -> dict[str, Any]:
    """The values of a fresh line command, as the API would accept it."""
    return {
        "id": str(uuid.uuid4()),
        "device": device,
        "user": "tester",
        "kind": "line",
        "payload": "*IDN?",
        "read": None,
        "timeout_s": 5.0,
        "expires_s": None,
        "idempotent": False,
        "analysis": None,
        "attempts": 0,
        "created_at": utc_now_iso(),
        **extra,
    }



def submitted(live: LiveStore, device: str, payload: str, **extra: Any) -> str:
    """A queued command with its message on the device's queue, as the API makes it."""
    values = command_values(device, payload=payload, **{"timeout_s": 2.0, **extra})
    enqueue = live.execute_message(values["id"], device)
    assert live.create(values, queue_cap=100, enqueue=enqueue).moved
    return str(values["id"])

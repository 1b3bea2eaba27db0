"""Commands for the integration tests: values shaped as the API stores them, and waits on
their live state."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tasks.command_record import utc_now_iso
from tasks.lifecycle import State
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


def wait_until_dispatched(live: LiveStore, command_id: str, timeout_s: float = 5.0) -> None:
    """Return once a claim sent ahead has run in Redis; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while live.state_of(command_id) != State.DISPATCHED:
        assert time.monotonic() < deadline, "the claim sent ahead never ran"
        time.sleep(0.001)

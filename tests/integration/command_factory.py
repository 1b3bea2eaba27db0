"""Commands for the integration tests: values shaped as the API stores them."""

from __future__ import annotations

import uuid
from typing import Any

from tasks.command_record import utc_now_iso


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


"""The command document: how it is stored as flat strings and shown to clients."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from tasks.command_values import BOOLEAN_FIELDS, CommandValues
from tasks.json_bounds import decode_stored_json

# Fields stored as JSON text in Redis and SQL.
JSON_FIELDS = ("payload", "read", "response", "analysis")
# Fields a client sees, in the order DESIGN §3 lists them, plus the submission options.
PUBLIC_FIELDS = (
    "id",
    "device",
    "user",
    "kind",
    "payload",
    "state",
    "response",
    "analysis",
    "error",
    "attempts",
    "timeout_s",
    "expires_s",
    "idempotent",
    "created_at",
    "dispatched_at",
    "responded_at",
    "finished_at",
)


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with microseconds, e.g. 2026-11-22T01:02:03.456789Z."""
    # isoformat ends "+00:00" for UTC; this format spells it Z.
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse a time written by `utc_now_iso`."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def to_redis_fields(values: Mapping[str, object]) -> dict[str, str]:
    """Flatten a partial command into Redis hash strings."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        if key in JSON_FIELDS:
            flat[key] = json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            flat[key] = "1" if value else "0"
        elif value is None:
            flat[key] = ""
        else:
            flat[key] = str(value)
    return flat


def from_redis_fields(raw: dict[str, str]) -> dict[str, Any]:
    """Rebuild a command's values from its Redis hash or a recorder stream entry."""
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key in JSON_FIELDS:
            values[key] = decode_stored_json(text) if text else None
        elif key in ("attempts", "seq"):
            values[key] = int(text) if text else 0
        elif key in ("timeout_s", "expires_s"):
            values[key] = float(text) if text else None
        elif key in BOOLEAN_FIELDS:
            values[key] = text == "1"
        else:
            values[key] = text or None
    return values


def command_from_redis(raw: dict[str, str]) -> CommandValues:
    """A command from its whole Redis hash, which the atomic create stored with every
    submitted field."""
    return cast(CommandValues, from_redis_fields(raw))


def public_view(values: CommandValues) -> dict[str, Any]:
    """The command as the API shows it."""
    shown: Mapping[str, object] = values
    return {key: shown.get(key) for key in PUBLIC_FIELDS}

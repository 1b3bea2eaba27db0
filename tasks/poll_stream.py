"""What an HTTP-polling device is sent and answers, on its live stream (DESIGN §9, §10).

A polling device has no worker reading a port, so its stream is written where its traffic
passes: the poll that hands a command out writes the command's claim and its payload as `tx`;
the reply the device posts is written as `rx`, then the state it moved the command to. Watchers
(SSE, the gateway's rx channel, `hwq devices watch`) follow a polled device as any other.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import redis

from tasks.command_values import CommandValues
from tasks.device_stream import STREAM_MAXLEN, StreamEntry, command_entry, stream_key
from tasks.lifecycle import State

log = logging.getLogger("hwq.poll")


def _as_bytes(kind: str, value: Any, field: str) -> bytes:
    """A payload or reply as the bytes a watcher sees: text as UTF-8, a raw command's base64
    decoded, anything else (a frame's fields, an error) as its JSON."""
    if isinstance(value, dict) and kind in ("line", "raw") and field in value:
        value = value[field]
    if kind == "raw" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value.encode()
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def handed_out_entries(values: CommandValues) -> list[StreamEntry]:
    """A command a poll handed out: its claim, then what the device was sent."""
    device, command_id = values["device"], values["id"]
    return [
        command_entry(device, command_id, State.DISPATCHED),
        StreamEntry(
            device, "tx", _as_bytes(values["kind"], values["payload"], "payload"), command_id
        ),  # fmt: skip
    ]


def answered_entries(values: CommandValues, reply: dict[str, Any], state: str) -> list[StreamEntry]:
    """A reply the device posted (rx), then the state it moved its command to (none when the
    reply came too late to move it)."""
    device, command_id = values["device"], values["id"]
    field = "data" if values["kind"] == "raw" else "text"
    kind = "error" if "error" in reply else values["kind"]
    entries = [StreamEntry(device, "rx", _as_bytes(kind, reply, field))]
    if state:
        entries.append(command_entry(device, command_id, state))
    return entries


def queue_entries(pipe: Any, prefix: str, entries: list[StreamEntry]) -> None:
    """Queue the entries on a pipeline, blocking or asyncio (its caller executes it)."""
    for entry in entries:
        pipe.xadd(stream_key(prefix, entry.device), entry.fields(),
                  maxlen=STREAM_MAXLEN, approximate=True)  # fmt: skip


def write_entries(client: redis.Redis, prefix: str, entries: list[StreamEntry]) -> None:
    """Write the entries now. The stream is for watchers: a Redis fault here is logged, never
    the poll's or the reply's failure (the command's state is already recorded)."""
    pipe = client.pipeline(transaction=False)
    queue_entries(pipe, prefix, entries)
    try:
        pipe.execute()
    except redis.RedisError as e:
        log.warning("stream entries not written",
                    extra={"device": entries[0].device, "error": str(e)})  # fmt: skip


async def write_entries_async(client: Any, prefix: str, entries: list[StreamEntry]) -> None:
    """write_entries on a redis.asyncio client."""
    pipe = client.pipeline(transaction=False)
    queue_entries(pipe, prefix, entries)
    try:
        await pipe.execute()
    except redis.RedisError as e:
        log.warning("stream entries not written",
                    extra={"device": entries[0].device, "error": str(e)})  # fmt: skip

"""`hwq devices watch NAME`: follow a device's live stream (DESIGN §9) in the terminal.

Reads the API's Server-Sent Events with the standard library, prints each event as it comes,
and after a dropped connection asks again from the last event it printed (`Last-Event-ID`),
so a reconnect loses nothing the stream still holds.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import click

from hwq.client.calls import API_PREFIX
from hwq.http_client import api_error
from hwq.running_system import client_target

# The API sends a comment every 15 s; this long without a byte means the connection is dead.
READ_TIMEOUT_S = 45.0
# Pause before reconnecting, doubling up to the longest while the API stays away.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
# Statuses after which asking again cannot help: bad token, role, device or query.
_FINAL_STATUSES = (400, 401, 403, 404, 422)
_MARKS = {"rx": "<", "tx": ">"}


@dataclass
class SseEvent:
    """One Server-Sent Event: its id, its name and its data lines joined."""

    id: str = ""
    event: str = "message"
    data: list[str] = field(default_factory=list)


def parse_sse(lines: Iterator[bytes]) -> Iterator[SseEvent]:
    """The events of an SSE body, line by line (the WHATWG event-stream format)."""
    event = SseEvent()
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if event.data:
                yield event
            event = SseEvent()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event.id = value
        elif name == "event":
            event.event = value
        elif name == "data":
            event.data.append(value)


def describe(kind: str, data: dict[str, Any]) -> str:
    """One printed line for an event: time, a mark for its direction, and what it says."""
    at = str(data.get("at", ""))
    if kind in _MARKS:
        shown = _shown(data)
        command = data.get("command_id")
        suffix = f"  [{command}]" if command else ""
        return f"{at} {_MARKS[kind]} {shown}{suffix}"
    if kind == "presence":
        return f"{at} * presence {data.get('presence')}"
    if kind == "command":
        return f"{at} * command {data.get('id')} {data.get('state')}"
    return f"{at} ? {kind} {json.dumps(data)}"


def _shown(data: dict[str, Any]) -> str:
    """Text as text, with line breaks and control characters escaped; other bytes as hex."""
    text = data.get("text")
    if text is None:
        return "0x" + base64.b64decode(data.get("data", "")).hex()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class StreamWatch:
    """Follows one device's stream, reconnecting from the last event seen."""

    def __init__(self, base_url: str, token: str | None, device: str, since: str | None) -> None:
        self.url = (
            base_url.rstrip("/").removesuffix(API_PREFIX)
            + f"{API_PREFIX}/devices/{urllib.parse.quote(device, safe='')}/stream"
        )
        self.token = token
        self.last_id = since

    def events(self) -> Iterator[tuple[str, dict[str, Any], bytes]]:
        """Each event's kind, data and bytes, for ever; ApiError when asking again is futile."""
        pause = RECONNECT_FIRST_S
        while True:
            try:
                with urllib.request.urlopen(self._request(), timeout=READ_TIMEOUT_S) as response:
                    pause = RECONNECT_FIRST_S
                    for event in parse_sse(iter(response.readline, b"")):
                        data = json.loads("\n".join(event.data))
                        if event.id:
                            self.last_id = event.id
                        chunk = base64.b64decode(data.get("data", ""))
                        yield event.event, data, chunk
            except urllib.error.HTTPError as e:
                with e:
                    error = api_error(e.code, e.read())
                if e.code in _FINAL_STATUSES:
                    raise error from None
                _note(f"stream refused ({error}); asking again")
            except (OSError, ValueError) as e:
                _note(f"stream interrupted ({e}); reconnecting")
            time.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_S)

    def _request(self) -> urllib.request.Request:
        headers = {"Accept": "text/event-stream", "User-Agent": "hwq-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        return urllib.request.Request(self.url, headers=headers)


def _note(message: str) -> None:
    click.echo(f"hwq: {message}", err=True)


@click.command("watch")
@click.argument("name")
@click.option(
    "--since",
    default=None,
    metavar="ID",
    help="Start after this event id (0: from the oldest the stream holds); default: from now.",
)
@click.option("--raw", is_flag=True, help="Write only the bytes the device sent, undecorated.")
def watch(name: str, since: str | None, raw: bool) -> None:
    """Follow a device's input (<) and output (>), presence and commands live; Ctrl-C ends."""
    url, token = client_target(os.environ)
    if since is not None and "-" not in since:
        since = f"{since}-0"
    follow = StreamWatch(url, token, name, since)
    out: BinaryIO = sys.stdout.buffer
    try:
        for kind, data, chunk in follow.events():
            if raw:
                if kind == "rx":
                    out.write(chunk)
                    out.flush()
                continue
            click.echo(describe(kind, data))
    except KeyboardInterrupt:
        # Ctrl-C is how a watch ends: no traceback, and what was printed stays.
        return

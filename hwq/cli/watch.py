"""`hwq devices watch NAME`: follow a device's live stream (DESIGN §9) in the terminal.

Reads the stream through the Python client (`Client.stream`), prints each event as it comes,
and after a dropped connection asks again from the last event it printed (`Last-Event-ID`),
so a reconnect loses nothing the stream still holds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

import click

from hwq.client import Client, HwqClientError
from hwq.client.models import StreamEvent
from hwq.http_client import ApiError
from hwq.running_system import client_target

# Pause before reconnecting, doubling up to the longest while the API stays away.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
# Statuses after which asking again cannot help: bad token, role, device or query.
_FINAL_STATUSES = (400, 401, 403, 404, 422)
_MARKS = {"rx": "<", "tx": ">"}


def describe(event: StreamEvent) -> str:
    """One printed line for an event: time, a mark for its direction, and what it says."""
    at = event.at or ""
    if event.kind in _MARKS:
        suffix = f"  [{event.command_id}]" if event.command_id else ""
        return f"{at} {_MARKS[event.kind]} {_shown(event)}{suffix}"
    if event.kind == "presence":
        return f"{at} * presence {event.fields.get('presence')}"
    if event.kind == "command":
        return f"{at} * command {event.fields.get('id')} {event.fields.get('state')}"
    return f"{at} ? {event.kind} {event.fields}"


def _shown(event: StreamEvent) -> str:
    """Text as text, with line breaks and control characters escaped; other bytes as hex."""
    if event.text is None:
        return "0x" + event.data.hex()
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in event.text)


class StreamWatch:
    """Follows one device's stream, reconnecting from the last event seen."""

    def __init__(self, client: Client, device: str, since: str | None) -> None:
        self.client = client
        self.device = device
        self.last_id = since

    def events(self) -> Iterator[StreamEvent]:
        """Each event, for ever; ApiError when asking again is futile."""
        pause = RECONNECT_FIRST_S
        while True:
            try:
                for event in self.client.stream(self.device, since=self.last_id):
                    pause = RECONNECT_FIRST_S
                    if event.id:
                        self.last_id = event.id
                    yield event
                _note("stream ended; reconnecting")
            except HwqClientError as e:
                if e.status in _FINAL_STATUSES:
                    raise ApiError(str(e), status=e.status, title=e.title, detail=e.detail,
                                   errors=e.errors, body=e.body) from None  # fmt: skip
                _note(f"stream interrupted ({e}); reconnecting")
            time.sleep(pause)
            pause = min(pause * 2, RECONNECT_MAX_S)


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
    follow = StreamWatch(Client(url, token), name, since)
    out: BinaryIO = sys.stdout.buffer
    try:
        for event in follow.events():
            if raw:
                if event.kind == "rx":
                    out.write(event.data)
                    out.flush()
                continue
            click.echo(describe(event))
    except KeyboardInterrupt:
        # Ctrl-C is how a watch ends: no traceback, and what was printed stays.
        return

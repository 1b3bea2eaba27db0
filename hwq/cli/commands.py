"""`hwq commands list|show|cancel|events|analyse`: the command history, read and acted on.

A command list shows each payload cut to one short line, and a page that has more ends with
the very `hwq commands list` that fetches the next one.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import click

from hwq.cli.formatting import echo_json, format_table, json_or_text, table_rows
from hwq.cli.waiting import stderr_is_tty, wait_for_command
from hwq.http_client import ApiClient
from tasks.lifecycle import State

# Payloads in `hwq commands list` are cut to this many characters.
SHORT_PAYLOAD_CHARS = 32

COMMAND_COLUMNS = ("id", "device", "state", "kind", "created_at", "payload")
EVENT_COLUMNS = ("state", "at", "detail")


def _short_payload(command: dict[str, Any]) -> str:
    payload = command.get("payload")
    if isinstance(payload, dict) and "command_id" in payload:
        text = ",".join(str(n) for n in [payload["command_id"], *payload.get("args", [])])
    elif isinstance(payload, str):
        text = payload
    else:
        text = json.dumps(payload)
    text = " ".join(text.split())
    if len(text) > SHORT_PAYLOAD_CHARS:
        return text[: SHORT_PAYLOAD_CHARS - 1] + "…"
    return text


@click.group()
def commands() -> None:
    """Read, cancel and analyse commands."""


@commands.command("list")
@click.option("--device", help="Only this device's commands.")
@click.option("--state", type=click.Choice([s.value for s in State]), help="Only in this state.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many [API: 50].")
@click.option("--cursor", help="Continue after a previous page.")
def list_commands(
    device: str | None, state: str | None, limit: int | None, cursor: str | None
) -> None:
    """Command history, newest first, as a table."""
    page = ApiClient.from_env().list_commands(device, state, limit, cursor)
    rows = ([*(c.get(k) for k in COMMAND_COLUMNS[:-1]), _short_payload(c)] for c in page["items"])
    click.echo(format_table(COMMAND_COLUMNS, rows))
    if page.get("next_cursor"):
        hint = next_page_command(device, state, limit, page["next_cursor"])
        click.echo(f"more: {hint}", err=True)


def next_page_command(device: str | None, state: str | None, limit: int | None, cursor: str) -> str:
    """The `hwq commands list` that fetches the next page: the same filters, the new cursor."""
    words = ["hwq", "commands", "list"]
    for option, value in (("--device", device), ("--state", state), ("--limit", limit)):
        if value is not None:
            words += [option, str(value)]
    return shlex.join([*words, "--cursor", cursor])


@commands.command("show")
@click.argument("command_id", metavar="ID")
@click.option("--wait", type=click.FloatRange(min=0), help="Wait up to S s for it to settle.")
def show_command(command_id: str, wait: float | None) -> None:
    """One command as JSON."""
    client = ApiClient.from_env()
    command = client.get_command(command_id)
    if wait:
        command = wait_for_command(client, command, wait, progress=stderr_is_tty())
    echo_json(command)


@commands.command("cancel")
@click.argument("command_id", metavar="ID")
def cancel_command(command_id: str) -> None:
    """Cancel a queued command."""
    command = ApiClient.from_env().cancel(command_id)
    click.echo(f"command {command_id} is {command.get('state')}")


@commands.command("events")
@click.argument("command_id", metavar="ID")
def command_events(command_id: str) -> None:
    """A command's transitions, oldest first."""
    click.echo(
        format_table(
            EVENT_COLUMNS, table_rows(ApiClient.from_env().events(command_id), EVENT_COLUMNS)
        )
    )


@commands.command("analyse")
@click.argument("command_id", metavar="ID")
@click.argument("value")
def analyse_command(command_id: str, value: str) -> None:
    """Record VALUE (JSON, or else text) as the manual analysis of a responded command."""
    command = ApiClient.from_env().analyse(command_id, json_or_text(value))
    click.echo(f"command {command_id} is {command.get('state')}")


COMMANDS: list[click.Command] = [commands]

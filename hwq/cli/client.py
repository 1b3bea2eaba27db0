"""Client subcommands over the HTTP API: `hwq devices …`, `hwq run …`, `hwq commands …`.

HWQ_URL says where the API is and HWQ_TOKEN who is asking (see ApiClient.from_env).
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click

from hwq.cli.queued_reason import why_still_queued
from hwq.cli.verdict import VERDICT_FAILED_EXIT, failed_verdict
from hwq.cli.watch import watch
from hwq.http_client import ApiClient, ApiError
from tasks.lifecycle import State, is_settled_for_wait, is_terminal

# The API's reply timeout when a submission names none (DESIGN §3); sizes `hwq run`'s wait.
DEFAULT_COMMAND_TIMEOUT_S = 5.0
# `hwq run` waits this much beyond the reply timeout by default, for queueing and dispatch.
RUN_WAIT_MARGIN_S = 10.0
# The API holds one long-poll (`?wait`) for at most this many seconds.
MAX_POLL_S = 60.0
# A terminal shows what a command is waiting in once it has waited this long...
PROGRESS_AFTER_S = 1.0
# ...and then polls this often, so the state it shows stays current.
PROGRESS_POLL_S = 5.0
# Payloads in `hwq commands list` are cut to this many characters.
SHORT_PAYLOAD_CHARS = 32
# Bounds of a standard frame's command id and arguments (DESIGN §5).
FRAME_COMMAND_IDS = range(0, 256)
INT32 = range(-(2**31), 2**31)

DEVICE_COLUMNS = (
    "name", "transport", "address", "codec", "host", "presence", "state", "queue_depth"
)  # fmt: skip
COMMAND_COLUMNS = ("id", "device", "state", "kind", "created_at", "payload")
EVENT_COLUMNS = ("state", "at", "detail")


# Output


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows under their headers in plain columns aligned with spaces."""
    lines = [list(headers)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _rows(items: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[list[object]]:
    return [[item.get(column) for column in columns] for item in items]


def _echo_json(document: object) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


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


def reply_text(command: dict[str, Any]) -> str:
    """What `hwq run` prints of a reply: the line, the base64 data, or `status values…`."""
    response = command.get("response") or {}
    kind = command.get("kind")
    if kind == "line":
        return str(response.get("text", ""))
    if kind == "raw":
        return str(response.get("data", ""))
    if kind == "frame":
        return " ".join(str(n) for n in [response.get("status"), *response.get("values", [])])
    if kind == "python":
        return str(response.get("stdout", "")).rstrip("\n")
    return json.dumps(response)


# Input


def json_or_text(value: str) -> object:
    """The value as JSON if it parses (`3.2`, `true`, `{"a": 1}`), else as the string itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_frame_payload(text: str) -> dict[str, Any]:
    """`COMMAND_ID[,ARG,...]` as a frame payload: `2,5,7` → `{command_id: 2, args: [5, 7]}`."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not COMMAND_ID[,ARG,...] in decimal integers, e.g. 2,5,7",
            param_hint="PAYLOAD",
        ) from None
    command_id, *args = numbers
    if command_id not in FRAME_COMMAND_IDS:
        raise click.BadParameter(
            f"frame command id {command_id} is outside 0..255", param_hint="PAYLOAD"
        )
    for arg in args:
        if arg not in INT32:
            raise click.BadParameter(f"frame argument {arg} is not an int32", param_hint="PAYLOAD")
    return {"command_id": command_id, "args": args}


def _raw_payload(text: str, is_base64: bool) -> str:
    if not is_base64:
        return base64.b64encode(text.encode()).decode()
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        raise click.BadParameter(f"{text!r} is not standard base64", param_hint="PAYLOAD") from None
    return text


def _payload(kind: str, text: str, is_base64: bool) -> object:
    if is_base64 and kind != "raw":
        raise click.UsageError("--base64 applies only to --kind raw")
    if kind == "raw":
        return _raw_payload(text, is_base64)
    if kind == "frame":
        return parse_frame_payload(text)
    return text


def _analysis(analyzer: str | None, params: Sequence[str]) -> dict[str, Any] | None:
    if analyzer is None:
        if params:
            raise click.UsageError("--param needs --analysis NAME")
        return None
    parsed: dict[str, object] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{param!r} is not key=value", param_hint="--param")
        parsed[key] = json_or_text(value)
    return {"analyzer": analyzer, "params": parsed}


# Waiting


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def wait_for_command(
    client: ApiClient, command: dict[str, Any], wait_s: float, progress: bool = False
) -> dict[str, Any]:
    """Long-poll until the command settles or `wait_s` passes; `progress` shows it on stderr."""
    deadline = time.monotonic() + wait_s
    chunk = PROGRESS_AFTER_S if progress else MAX_POLL_S
    shown = False
    while not is_settled_for_wait(command):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        command = client.get_command(command["id"], wait=min(chunk, remaining))
        if progress and not is_settled_for_wait(command):
            click.echo(
                f"\r\033[Kwaiting for {command['id']} ({command['state']})…", err=True, nl=False
            )
            shown = True
            chunk = PROGRESS_POLL_S
    if shown:
        click.echo("\r\033[K", err=True, nl=False)
    return command


def _report_run(
    client: ApiClient, command: dict[str, Any], wait_s: float, as_json: bool
) -> None:
    """Print a finished `hwq run`; exit 1 unless the command is done or awaits manual analysis,
    3 when its verdict did not pass."""
    if as_json:
        _echo_json(command)
    command_id, state = command["id"], command["state"]
    if is_settled_for_wait(command) and state in (State.DONE, State.RESPONDED):
        if not as_json:
            click.echo(reply_text(command))
            _note_analysis(command)
        failed = failed_verdict(command)
        if failed is not None:
            click.echo(f"command {command_id}: {failed}", err=True)
            click.get_current_context().exit(VERDICT_FAILED_EXIT)
        return
    if is_terminal(state):
        error = command.get("error")
        click.echo(
            f"command {command_id} ended {state}" + (f": {error}" if error else ""), err=True
        )
    elif state == State.QUEUED and (reason := _why_queued(client, command, wait_s)):
        click.echo(reason, err=True)
    else:
        click.echo(
            f"command {command_id} is still {state} after {wait_s:g} s; "
            f"follow it with `hwq commands show {command_id} --wait 60`",
            err=True,
        )
    click.get_current_context().exit(1)


def _why_queued(client: ApiClient, command: dict[str, Any], wait_s: float) -> str | None:
    """Why the device cannot take its queued command; None when the API cannot say, so no
    false alarm."""
    try:
        device = client.get_device(command["device"])
    except ApiError:
        return None
    return why_still_queued(device, command["id"], wait_s)


def _note_analysis(command: dict[str, Any]) -> None:
    analysis = command.get("analysis") or {}
    if command["state"] == State.RESPONDED:
        click.echo(
            f"command {command['id']} awaits manual analysis: "
            f"hwq commands analyse {command['id']} VALUE",
            err=True,
        )
    elif analysis.get("value") is not None:
        value = json.dumps(analysis["value"], ensure_ascii=False)
        click.echo(f"analysis ({analysis.get('analyzer')}): {value}", err=True)


# hwq run


@click.command()
@click.argument("device")
@click.argument("payload")
@click.option(
    "--kind",
    type=click.Choice(["line", "raw", "frame", "python"]),
    default="line",
    show_default=True,
)
@click.option("--base64", "is_base64", is_flag=True, help="Raw PAYLOAD is base64 already.")
@click.option("--timeout", type=float, help="Seconds the reply must be complete in [API: 5].")
@click.option("--expires", type=float, help="Expire the command if not dispatched within S s.")
@click.option("--idempotent", is_flag=True, help="Safe to run again if its worker vanishes.")
@click.option("--analysis", "analyzer", metavar="NAME", help="Analyzer of the reply, or manual.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Analyzer parameter.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    help="Seconds to wait for the command to finish [default: timeout + 10].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole command document.")
def run(
    device: str,
    payload: str,
    kind: str,
    is_base64: bool,
    timeout: float | None,
    expires: float | None,
    idempotent: bool,
    analyzer: str | None,
    params: tuple[str, ...],
    wait: float | None,
    as_json: bool,
) -> None:
    """Run PAYLOAD on DEVICE, wait for it to finish and print the reply.

    Exit status: 0 done, 1 the command did not end done, 3 done but its verdict failed.
    """
    body: dict[str, Any] = {"kind": kind, "payload": _payload(kind, payload, is_base64)}
    if timeout is not None:
        body["timeout_s"] = timeout
    if expires is not None:
        body["expires_s"] = expires
    if idempotent:
        body["idempotent"] = True
    analysis = _analysis(analyzer, params)
    if analysis is not None:
        body["analysis"] = analysis
    client = ApiClient.from_env()
    if wait is None:
        wait = (timeout or DEFAULT_COMMAND_TIMEOUT_S) + RUN_WAIT_MARGIN_S
    progress = _stderr_is_tty()
    started = time.monotonic()
    # Submitted and waited for in one request; a command that takes longer is followed below.
    command = client.submit(
        device, body, wait=min(wait, PROGRESS_AFTER_S if progress else MAX_POLL_S)
    )
    remaining = max(0.0, wait - (time.monotonic() - started))
    command = wait_for_command(client, command, remaining, progress=progress)
    _report_run(client, command, wait, as_json)


# hwq devices


@click.group()
def devices() -> None:
    """List, register, change and remove devices."""


devices.add_command(watch)


@devices.command("list")
def list_devices() -> None:
    """All devices as a table, and how far the ledger trails the live state."""
    client = ApiClient.from_env()
    click.echo(format_table(DEVICE_COLUMNS, _rows(client.list_devices(), DEVICE_COLUMNS)))
    click.echo(ledger_footer(client.health()), err=True)


def ledger_footer(health: dict[str, Any]) -> str:
    """One line on the recorder's lag, from the API's health report."""
    pending, lag_s = health.get("recorder_pending"), health.get("recorder_lag_s")
    if pending is None:
        return "ledger: lag unknown (Redis unreachable)"
    if not pending:
        return "ledger: up to date"
    return f"ledger: {pending} transitions not yet recorded, the oldest {lag_s:.1f} s old"


@devices.command("show")
@click.argument("name")
def show_device(name: str) -> None:
    """One device as JSON."""
    _echo_json(ApiClient.from_env().get_device(name))


@devices.command("add")
@click.argument("name")
@click.option("--address", help="pyserial URL or port, e.g. /dev/ttyUSB0; needed for serial.")
@click.option(
    "--transport", type=click.Choice(["serial", "http-poll"]), default="serial", show_default=True
)
@click.option("--baudrate", type=int, help="Serial speed [API: 115200].")
@click.option("--codec", type=click.Choice(["line", "raw", "frame"]), help="[API: line]")
@click.option("--host", help="The host agent that serves it [API: the API's machine].")
@click.option("--options", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="Serial setting or allowance, e.g. parity=E (repeatable).")  # fmt: skip
def add_device(
    name: str,
    address: str | None,
    transport: str,
    baudrate: int | None,
    codec: str | None,
    host: str | None,
    option_pairs: tuple[str, ...],
) -> None:
    """Register device NAME."""
    from hwq.cli.hosts import parse_options

    if transport == "serial" and not address:
        raise click.UsageError("a serial device needs --address (a port or pyserial URL)")
    spec: dict[str, object] = {"name": name, "transport": transport, "address": address}
    spec.update({k: v for k, v in {"baudrate": baudrate, "codec": codec, "host": host}.items()
                 if v is not None})  # fmt: skip
    if option_pairs:
        spec["options"] = parse_options(option_pairs)
    device = ApiClient.from_env().register_device(spec)
    click.echo(f"added device {device.get('name', name)}")


@devices.command("remove")
@click.argument("name")
def remove_device(name: str) -> None:
    """Remove device NAME; refused while it has commands queued or in flight."""
    ApiClient.from_env().delete_device(name)
    click.echo(f"removed device {name}")


@devices.command("rename")
@click.argument("old")
@click.argument("new")
def rename_device(old: str, new: str) -> None:
    """Rename device OLD to NEW; refused while it has commands queued or in flight."""
    ApiClient.from_env().update_device(old, {"name": new})
    click.echo(f"renamed device {old} to {new}")


# hwq commands


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


def next_page_command(
    device: str | None, state: str | None, limit: int | None, cursor: str
) -> str:
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
        command = wait_for_command(client, command, wait, progress=_stderr_is_tty())
    _echo_json(command)


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
        format_table(EVENT_COLUMNS, _rows(ApiClient.from_env().events(command_id), EVENT_COLUMNS))
    )


@commands.command("analyse")
@click.argument("command_id", metavar="ID")
@click.argument("value")
def analyse_command(command_id: str, value: str) -> None:
    """Record VALUE (JSON, or else text) as the manual analysis of a responded command."""
    command = ApiClient.from_env().analyse(command_id, json_or_text(value))
    click.echo(f"command {command_id} is {command.get('state')}")


COMMANDS = [devices, run, commands]

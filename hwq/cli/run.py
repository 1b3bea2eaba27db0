"""`hwq run DEVICE PAYLOAD`: submit a command, wait for it, print its reply.

The exit status tells a script how it went (0 done, 1 not done, 3 done but the verdict
failed), and when the command is not done, stderr says why and how to follow it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from hwq.cli.formatting import echo_json
from hwq.cli.queued_reason import why_still_queued
from hwq.cli.run_request import analysis_request, command_payload
from hwq.cli.verdict import VERDICT_FAILED_EXIT, failed_verdict
from hwq.cli.waiting import MAX_POLL_S, PROGRESS_AFTER_S, stderr_is_tty, wait_for_command
from hwq.http_client import ApiClient, ApiError
from tasks.lifecycle import State, is_settled_for_wait, is_terminal

# The API's reply timeout when a submission names none (DESIGN §3); sizes `hwq run`'s wait.
DEFAULT_COMMAND_TIMEOUT_S = 5.0
# `hwq run` waits this much beyond the reply timeout by default, for queueing and dispatch.
RUN_WAIT_MARGIN_S = 10.0


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


def _report_run(client: ApiClient, command: dict[str, Any], wait_s: float, as_json: bool) -> None:
    """Print a finished `hwq run`; exit 1 unless the command is done or awaits manual analysis,
    3 when its verdict did not pass."""
    if as_json:
        echo_json(command)
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
    body: dict[str, Any] = {"kind": kind, "payload": command_payload(kind, payload, is_base64)}
    if timeout is not None:
        body["timeout_s"] = timeout
    if expires is not None:
        body["expires_s"] = expires
    if idempotent:
        body["idempotent"] = True
    analysis = analysis_request(analyzer, params)
    if analysis is not None:
        body["analysis"] = analysis
    client = ApiClient.from_env()
    if wait is None:
        wait = (timeout or DEFAULT_COMMAND_TIMEOUT_S) + RUN_WAIT_MARGIN_S
    progress = stderr_is_tty()
    started = time.monotonic()
    # Submitted and waited for in one request; a command that takes longer is followed below.
    command = client.submit(
        device, body, wait=min(wait, PROGRESS_AFTER_S if progress else MAX_POLL_S)
    )
    remaining = max(0.0, wait - (time.monotonic() - started))
    command = wait_for_command(client, command, remaining, progress=progress)
    _report_run(client, command, wait, as_json)


COMMANDS: list[click.Command] = [run]

"""Commands: submit to a device, read (optionally waiting), list, cancel, analyse, events."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, url_for

from api.auth import current_principal, require_role
from api.context import hwq_service
from api.inputs import IDEMPOTENCY_KEY_PARAMETER, idempotency_key, json_body, query_args
from api.openapi import documented
from api.request_log import note
from api.responses import Command, CommandEventList, CommandList, SettledCommand
from api.schemas import (
    AnalysisSubmit,
    CommandListQuery,
    CommandSubmit,
    CommandWaitQuery,
    write_only,
)
from tasks.command_fit import WRITE_ONLY_READ
from tasks.lifecycle import is_settled_for_wait

bp = Blueprint("commands", __name__)


@bp.post("/devices/<device:name>/commands")
@documented(
    "Submit a command, optionally waiting for it to settle",
    body=CommandSubmit,
    query=CommandWaitQuery,
    response=Command,
    status=202,
    errors=(409, 429),
    headers=(IDEMPOTENCY_KEY_PARAMETER,),
    other_responses={200: SettledCommand},
)
@require_role("operator")
def submit_command(name: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a command on a device; 202 with its Location, 429 if the device's queue is full.

    With `wait`, 200 once it settles within that many seconds, else 202 as it stands. 409 for
    a python command to a device that does not allow python.
    """
    submission = submission_of(json_body(CommandSubmit))
    wait = query_args(CommandWaitQuery).wait
    key = idempotency_key()
    principal = current_principal()
    assert principal is not None  # require_role has authenticated the request
    command = hwq_service().submit(name, principal.name, submission, idempotency_key=key)
    note(command=command["id"])
    location = {"Location": url_for(".get_command", command_id=command["id"])}
    # Behind the front door (api/submit_front.py) a submission with a body the view checks
    # never waits here; the in-process app, as the tests drive it, waits on this thread.
    if wait:
        command = hwq_service().wait_command(command["id"], wait)
    return command, submitted_status(command, wait), location


def submission_of(body: CommandSubmit) -> dict[str, Any]:
    """A submission's checked body as the service takes it."""
    submission: dict[str, Any] = body.model_dump()
    if submission["kind"] == "raw" and write_only(body.root):
        submission["read"] = WRITE_ONLY_READ
    return submission


def submitted_status(command: dict[str, Any], wait: float | None) -> int:
    """200 for a submission that waited and saw its command settle, else 202."""
    return 200 if wait and is_settled_for_wait(command) else 202


@bp.get("/commands/<command_id>")
@documented(
    "Read a command, optionally waiting for it to settle", query=CommandWaitQuery, response=Command
)
@require_role("viewer")
def get_command(command_id: str) -> dict[str, Any]:
    """The command; with `wait`, once it settles or after that many seconds."""
    wait = query_args(CommandWaitQuery).wait
    if wait:
        return hwq_service().wait_command(command_id, wait)
    return hwq_service().get_command(command_id)


@bp.get("/commands")
@documented("Command history, newest first", query=CommandListQuery, response=CommandList)
@require_role("viewer")
def list_commands() -> dict[str, Any]:
    """A page of commands, filtered by device and state; `next_cursor` fetches the next."""
    query = query_args(CommandListQuery)
    items, next_cursor = hwq_service().list_commands(
        device=query.device,
        state=query.state.value if query.state else None,
        limit=query.limit,
        cursor=query.cursor,
    )
    return {"items": items, "next_cursor": next_cursor}


@bp.post("/commands/<command_id>/cancel")
@documented("Cancel a queued command", response=Command, errors=(409,))
@require_role("operator")
def cancel_command(command_id: str) -> dict[str, Any]:
    """Cancel a command that is still queued; 409 otherwise."""
    return hwq_service().cancel(command_id, by=_principal_name())


@bp.post("/commands/<command_id>/analysis")
@documented("Record a manual analysis", body=AnalysisSubmit, response=Command, errors=(409,))
@require_role("operator")
def analyse_command(command_id: str) -> dict[str, Any]:
    """Finish a responded command that asked for manual analysis; 409 otherwise."""
    value = json_body(AnalysisSubmit).value
    return hwq_service().analyse(command_id, value, by=_principal_name())


@bp.get("/commands/<command_id>/events")
@documented("A command's transitions", response=CommandEventList)
@require_role("viewer")
def command_events(command_id: str) -> dict[str, Any]:
    """Every state the command went through, with times."""
    return {"items": hwq_service().command_events(command_id)}


def _principal_name() -> str | None:
    """Who the request was authenticated as, for the events a change leaves."""
    principal = current_principal()
    return principal.name if principal else None

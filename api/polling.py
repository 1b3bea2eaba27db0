"""HTTP-polling devices (DESIGN §10): take the next command, answer a collected one.

`GET /devices/{name}/next?wait=S` is held by the front door (api/poll_front.py) without a
thread; the view here answers it only when the Flask app is reached directly, without waiting.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from api.auth import current_principal, require_role
from api.context import hwq_service
from api.inputs import json_body, query_args
from api.openapi import documented
from api.poll_parts import poll_parts
from api.poll_schemas import PollReply, PollWaitQuery
from api.request_log import note
from api.responses import Command
from tasks.command_record import public_view
from tasks.errors import CommandStateError
from tasks.poll_claims import PollClaims
from tasks.poll_replies import check_device_access

bp = Blueprint("polling", __name__)

# The transport of a device that asks for its own work.
HTTP_POLL = "http-poll"


def check_polling_device(device: dict[str, Any]) -> None:
    """CommandStateError unless the device is one that polls (a worker serves the others)."""
    if device.get("transport") != HTTP_POLL:
        raise CommandStateError(
            f"device {device.get('name')} has transport {device.get('transport')}; only an "
            f"{HTTP_POLL} device takes its commands by polling"
        )


@bp.get("/devices/<device:name>/next")
@documented(
    "An HTTP-polling device takes its next command (204 when none came)",
    query=PollWaitQuery,
    response=Command,
    errors=(409, 429),
    empty_responses={204: "No command came within the wait"},
)
@require_role("device")
def next_command(name: str) -> Any:
    """Claim the device's next command (queued → dispatched) and hand it over."""
    query_args(PollWaitQuery)
    principal = current_principal()
    assert principal is not None  # require_role has authenticated the request
    check_device_access(principal, name)
    check_polling_device(hwq_service().get_device(name))
    values = PollClaims(hwq_service().live, name).take_now()
    if values is None:
        return Response(status=204)
    note(command=values["id"])
    poll_parts().events.collected(values["id"], name)
    return public_view(values)


@bp.post("/commands/<command_id>/response")
@documented(
    "A polling device answers a command it collected", body=PollReply, response=Command,
    errors=(409,),
)  # fmt: skip
@require_role("device")
def answer_command(command_id: str) -> dict[str, Any]:
    """Record the reply: responded → done (or awaiting analysis), or failed with `error`.

    409 when the command is not awaiting a polled reply: answered already, or timed out
    (the reply is then kept as a `late_reply` event).
    """
    reply = json_body(PollReply).model_dump(exclude_none=True)
    principal = current_principal()
    assert principal is not None
    note(command=command_id)
    poll_parts().replies.record(principal, command_id, reply)
    return hwq_service().get_command(command_id)

"""The front door's own `POST /devices/{name}/commands[?wait=S]`: the submission every command
takes, checked and submitted without the Flask app, its `?wait` held on redis.asyncio.

A submission is the API's hottest request. Through the Flask app it paid for a request
context, the view's hooks, a JSON answer the front door then parsed back, and a thread hop
for each; here it pays for the checks the view makes (the same functions, api/inputs.py and
api/commands.py), one hop to the pool for the service's ledger insert and Redis create, and
the answer. A query the front door does not take as it is (an unknown parameter, a `wait`
out of range) goes to the view, which answers it as it always has.

A token found in the cache costs no Redis read here: the create itself refuses the command
if any token was revoked since that lookup (TokensChanged), and the token is looked up again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from flask import Response
from pydantic import ValidationError

from api.auth import check_role
from api.commands import submission_of, submitted_status
from api.held_waits import ClientGone
from api.inputs import IDEMPOTENCY_KEY_HEADER, checked_idempotency_key, validated_body
from api.schemas import CommandSubmit, CommandWaitQuery
from tasks.errors import TokensChanged
from tasks.lifecycle import is_settled_for_wait

if TYPE_CHECKING:
    from api.front import Front, Incoming, Receive, Send

# The view a submission would otherwise reach, and the one its Location names.
SUBMIT_ENDPOINT = "commands.submit_command"
COMMAND_ENDPOINT = "commands.get_command"
# Any query that is not one of these is the view's to answer.
_TAKEN = frozenset(CommandWaitQuery.model_fields)


def taken_query(query_string: bytes) -> tuple[bool, float | None]:
    """Whether the front door takes a submission with this query itself, and its wait."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or not _TAKEN.issuperset(names):
        return False, None
    try:
        query = CommandWaitQuery.model_validate(dict(pairs))
    except ValidationError:
        return False, None
    return True, query.wait or None


async def submit(
    front: Front,
    request: Incoming,
    device: str,
    role: str,
    body: bytes,
    wait_s: float | None,
    receive: Receive,
    send: Send,
) -> None:
    """Check and submit the command (202, or 200 once it settles within `wait_s`); a refusal
    is answered as a problem, on a connection that stays open (the body has been read)."""
    request.log_fields["device"] = device
    try:
        command = await _accepted(front, request, device, role, body)
        if wait_s and not is_settled_for_wait(command):
            command = await front._settled_or_as_it_stands(request, command, wait_s, receive)
    except ClientGone:
        raise
    except Exception as e:
        await front._refuse(request, send, e, close=False)
        return
    response = cast(Response, front.app.json.response(command))
    response.status_code = submitted_status(command, wait_s)
    response.headers["Location"] = front._routes.build(
        COMMAND_ENDPOINT, {"command_id": command["id"]}
    )
    await front._send_response(request, send, response, close=False)


async def _accepted(
    front: Front, request: Incoming, device: str, role: str, body: bytes
) -> dict[str, Any]:
    """The command the service accepted, after the checks the view makes."""
    assert request.principal is not None  # a route with a role is authenticated first
    check_role(request.principal, role)
    submission = submission_of(validated_body(CommandSubmit, body))
    key = checked_idempotency_key(request.headers.get(IDEMPOTENCY_KEY_HEADER.lower()))
    try:
        command: dict[str, Any] = await front.bridge.run_blocking(
            front.service.submit, device, request.principal.name, submission, key,
            request.unchecked_generation,
        )  # fmt: skip
    except TokensChanged:
        # A token was revoked since this one's cached lookup: it is looked up again (401 if
        # it was the one), and the submission, refused with nothing kept, made again.
        principal = await front._authenticate(request, request.token)
        check_role(principal, role)
        command = await front.bridge.run_blocking(
            front.service.submit, device, principal.name, submission, key
        )
    request.log_fields["command"] = command["id"]
    return command

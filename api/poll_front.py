"""The front door's hold of `GET /devices/{name}/next?wait=S`: an HTTP-polling device's long
poll, on redis.asyncio with no thread, counted with the other held waits (api/held_waits.py).

What the hold cannot settle itself (a bad query, a device Redis does not know) goes to the
Flask view, which answers it as it would without the front door.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from flask import Response
from pydantic import ValidationError

from api.held_waits import ClientGone, unless_client_leaves
from api.poll_parts import poll_parts_of
from api.poll_schemas import PollWaitQuery
from api.polling import HTTP_POLL
from tasks.command_record import public_view
from tasks.command_wait import longest_block_s
from tasks.poll_claims import PollClaims
from tasks.poll_replies import check_device_access
from tasks.redis_replies import text

if TYPE_CHECKING:
    from api.front import Front, Incoming, Receive, Send

log = logging.getLogger("hwq.api")

# The view whose requests the front door holds here.
POLL_ENDPOINT = "polling.next_command"


async def hold_poll(
    front: Front, request: Incoming, device: str, receive: Receive, send: Send
) -> None:
    """Answer one poll: the claimed command (200), or 204 once its wait has passed."""
    request.log_fields["device"] = device
    wait_s = _wait_s(request.scope["query_string"])
    if wait_s is None:
        await front._run_app(request, b"", send, close=request.has_body)
        return
    principal = await front._authenticate(request)
    check_device_access(principal, device)
    live = front.service.live
    transport = await front.redis.hget(live.device_config_key(device), "transport")
    if transport is None or text(transport) != HTTP_POLL:
        # Unknown here (or served by a worker): the view reads the registry and says why.
        await front._run_app(request, b"", send, close=request.has_body)
        return
    claims = PollClaims(live, device)
    with front.waits.hold(request.token):
        poll = claims.take_async(front.redis, wait_s, longest_block_s(front.redis))
        try:
            values = await unless_client_leaves(receive, poll, let_work_settle=True)
        except ClientGone:
            # Claimed for a client that left: back in its queue, not stranded until its timeout.
            if claims.claimed is not None:
                await front.bridge.run_blocking(claims.put_back, claims.claimed["id"])
            raise
    if values is None:
        response = Response(status=204)
    else:
        request.log_fields["command"] = values["id"]
        events = poll_parts_of(front.app).events
        # Flower's events take a broker round trip: off the loop, and the device need not wait.
        asyncio.get_running_loop().run_in_executor(None, events.collected, values["id"], device)
        response = cast(Response, front.app.json.response(public_view(values)))
    await front._send_response(request, send, response, close=request.has_body)


def _wait_s(query_string: bytes) -> float | None:
    """The poll's wait if the query is one the view accepts, else None (the view answers)."""
    values: dict[str, Any] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        values.setdefault(key, value)
    try:
        return PollWaitQuery.model_validate(values).wait
    except ValidationError:
        return None

"""A device's live stream as Server-Sent Events (DESIGN §9): the route and its query.

The front door serves the route itself (`api/stream_server.py`), on redis.asyncio, without a
thread per observer; the view here exists for the route's place in the URL map and the
OpenAPI document, and answers only when the Flask app runs without its front door.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import Field

from api.auth import require_role
from api.openapi import documented
from api.schemas import QueryModel
from tasks.errors import ServiceUnavailable

bp = Blueprint("streams", __name__)

EVENT_STREAM_MIME = "text/event-stream"
# A stream entry id, as `id:` sends it: Redis milliseconds and a sequence number.
ENTRY_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
# The request header a reconnecting EventSource sends (the WHATWG HTML standard's name).
LAST_EVENT_ID_HEADER = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Resume after this event id; the `last_event_id` query does the same. "
    "Empty counts as absent, as the WHATWG standard's EventSource sends none before an id",
    "schema": {"type": "string", "pattern": r"^([0-9]{1,20}-[0-9]{1,20})?$"},
}


class StreamQuery(QueryModel):
    """Where a stream starts, and how a browser that cannot send headers authenticates."""

    last_event_id: str | None = Field(
        None, pattern=ENTRY_ID_PATTERN, description="Resume after this event id"
    )
    token: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="The bearer token, for clients that cannot send headers (EventSource)",
    )
    follow: bool = Field(
        True, description="false: send what the stream holds after last_event_id, then end"
    )


@bp.get("/devices/<device:name>/stream")
@documented(
    "Follow a device's input and output as Server-Sent Events",
    query=StreamQuery,
    media=EVENT_STREAM_MIME,
    errors=(429,),
    headers=(LAST_EVENT_ID_HEADER,),
)
@require_role("viewer")
def stream_device(name: str) -> dict[str, Any]:
    """Events `rx`, `tx`, `presence` and `command`, each with its stream id (DESIGN §9)."""
    raise ServiceUnavailable("the device stream is served by the API's front door (hwq api)")

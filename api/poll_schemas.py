"""Request bodies and queries of HTTP-polling devices (DESIGN §10)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from api.schemas import (
    MAX_FRAME_ARGS,
    AcceptWholeFloat,
    Base64Text,
    Int32,
    QueryModel,
    StrictModel,
)
from tasks.poll_claims import MAX_POLL_WAIT_S

# Longest text a polling device may send back in one field: a program's capped output
# (HWQ_PROGRAM_OUTPUT_KIB, 64 by default) fits, and one character more, even escaped as JSON,
# stays within the default body limit, so an overlong field is named (422), not a 413.
MAX_REPLY_TEXT_CHARS = 64 * 1024


class PollWaitQuery(QueryModel):
    """How long a poll may wait for a command."""

    wait: float = Field(
        0,
        ge=0,
        le=MAX_POLL_WAIT_S,
        allow_inf_nan=False,
        description="Hold the request up to this many seconds until a command comes (else 204)",
    )


ReplyText = Annotated[str, Field(max_length=MAX_REPLY_TEXT_CHARS)]


class PollReply(StrictModel):
    """A polling device's reply: the fields of its command's kind, or only `error`.

    line → `text`; raw → `data` (base64); frame → `status`, `values`; python → `stdout`,
    `stderr`, `exit_code`. `error` ends the command failed.
    """

    text: ReplyText | None = None
    data: Base64Text | None = None
    status: Annotated[int, Field(ge=0, le=255), AcceptWholeFloat] | None = None
    values: list[Int32] | None = Field(None, max_length=MAX_FRAME_ARGS)
    stdout: ReplyText | None = None
    stderr: ReplyText | None = None
    exit_code: Annotated[int, Field(ge=-255, le=255), AcceptWholeFloat] | None = None
    error: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None

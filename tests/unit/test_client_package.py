"""The client package: importing it stays light, and the live stream's events parse."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from hwq.client.errors import (
    HwqClientError,
    QueueFull,
    ServerError,
    ValidationFailed,
    problem_error,
)
from hwq.client.sse import SseParser


def test_importing_the_client_loads_no_server_side_library() -> None:
    script = (
        "import sys\n"
        "from hwq import Client, AsyncClient\n"
        "heavy = [m for m in ('celery', 'flask', 'sqlalchemy', 'kombu', 'redis', 'tasks', 'api')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_sse_lines_become_events_with_their_id_kind_and_bytes() -> None:
    parser = SseParser()
    rx = {"at": "2026-01-01T00:00:00Z", "data": base64.b64encode(b"OK\n").decode(),
          "text": "OK\n"}  # fmt: skip
    presence = {"at": "2026-01-01T00:00:01Z", "data": "", "presence": "online"}
    lines = [": keep-alive", "", "event: rx", "id: 1-0", f"data: {json.dumps(rx)}", "",
             "event: presence", "id: 2-0", f"data: {json.dumps(presence)}", ""]  # fmt: skip

    events = [e for e in map(parser.feed, lines) if e is not None]

    assert [(e.kind, e.id) for e in events] == [("rx", "1-0"), ("presence", "2-0")]
    assert events[0].data == b"OK\n" and events[0].text == "OK\n"
    assert events[1].fields == {"presence": "online"}
    assert parser.last_id == "2-0"


def test_problem_statuses_map_to_their_classes() -> None:
    errors = [{"field": "payload", "message": "too long"}]
    invalid = problem_error(422, {"title": "Invalid", "errors": errors}, b"")
    assert isinstance(invalid, ValidationFailed) and invalid.errors == errors
    assert isinstance(problem_error(429, {"title": "Full"}, b""), QueueFull)
    assert isinstance(problem_error(502, None, b"Bad Gateway"), ServerError)
    teapot = problem_error(418, None, b"")
    assert type(teapot) is HwqClientError and teapot.status == 418

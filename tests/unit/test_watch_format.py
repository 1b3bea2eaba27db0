"""`hwq devices watch`: each event of the stream, as the client decodes it, printed as one line."""

from __future__ import annotations

import base64
import json

from hwq.cli.watch import describe
from hwq.client.models import StreamEvent
from hwq.client.sse import SseParser

AT = "2026-11-29T17:00:00.000000Z"


def _event(kind: str, **data: object) -> StreamEvent:
    return StreamEvent.from_sse("1-0", kind, json.dumps({"at": AT, **data}))


def test_the_client_splits_events_at_blank_lines_and_skips_comments() -> None:
    parser = SseParser()
    lines = ["retry: 2000", "", ": keep-alive", "", "id: 1-0", "event: rx",
             'data: {"at": "t", "data": "T0s=",', 'data: "text": "OK"}', ""]  # fmt: skip
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert [(e.id, e.kind, e.data, e.text) for e in events] == [("1-0", "rx", b"OK", "OK")]


def test_each_kind_prints_as_one_marked_line() -> None:
    tx = _event("tx", data=base64.b64encode(b"*IDN?\n").decode(), text="*IDN?\n",
                command_id="c1")  # fmt: skip
    assert describe(tx) == f"{AT} > *IDN?\\n  [c1]"
    binary = _event("rx", data=base64.b64encode(b"\x00\xff").decode())
    assert describe(binary) == f"{AT} < 0x00ff"
    assert describe(_event("presence", presence="online")) == f"{AT} * presence online"
    assert describe(_event("command", id="c1", state="done")) == f"{AT} * command c1 done"

"""`hwq devices watch`: reading the SSE format and printing each event as one line."""

from __future__ import annotations

import base64

from hwq.cli.watch import describe, parse_sse


def test_events_are_split_at_blank_lines_and_comments_are_skipped() -> None:
    body = [
        b"retry: 2000\n",
        b"\n",
        b": keep-alive\n",
        b"\n",
        b"id: 1-0\r\n",
        b"event: rx\n",
        b'data: {"a":\n',
        b"data: 1}\n",
        b"\n",
        b"id: 2-0\n",
        b"data:x\n",
        b"\n",
        b"id: 3-0\n",
        b"data: cut off before its blank line\n",
    ]
    events = list(parse_sse(iter(body)))
    assert [(e.id, e.event, e.data) for e in events] == [
        ("1-0", "rx", ['{"a":', "1}"]),
        ("2-0", "message", ["x"]),
    ]


def test_each_kind_prints_as_one_marked_line() -> None:
    at = "2026-11-29T17:00:00.000000Z"
    tx = {"at": at, "data": base64.b64encode(b"*IDN?\n").decode(), "text": "*IDN?\n",
          "command_id": "c1"}  # fmt: skip
    assert describe("tx", tx) == f"{at} > *IDN?\\n  [c1]"
    binary = {"at": at, "data": base64.b64encode(b"\x00\xff").decode()}
    assert describe("rx", binary) == f"{at} < 0x00ff"
    assert describe("presence", {"at": at, "presence": "online"}) == f"{at} * presence online"
    command = {"at": at, "id": "c1", "state": "done"}
    assert describe("command", command) == f"{at} * command c1 done"

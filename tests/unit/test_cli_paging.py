"""`hwq commands list`: the "more:" hint fetches the next page of the same listing."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from hwq.cli import main

from canned_http_server import CannedHttpServer

LIST = "/api/v1/commands"


@pytest.fixture
def server() -> Iterator[CannedHttpServer]:
    with CannedHttpServer() as canned:
        yield canned


def row(command_id: str) -> dict[str, object]:
    return {"id": command_id, "device": "sim0", "state": "done", "kind": "line",
            "created_at": "2026-11-22T02:02:21Z", "payload": "*IDN?"}  # fmt: skip


def test_more_hint_keeps_device_state_and_limit(server: CannedHttpServer) -> None:
    server.reply("GET", LIST, body={"items": [row("a"), row("b")], "next_cursor": "CUR1"})
    server.reply("GET", LIST, body={"items": [row("c")], "next_cursor": None})
    env = {"HWQ_URL": server.url, "HWQ_TOKEN": "t"}
    first = CliRunner().invoke(
        main, ["commands", "list", "--device", "sim0", "--state", "done", "--limit", "2"], env=env
    )

    assert first.exit_code == 0, first.output
    hint = first.stderr.strip()
    assert hint == "more: hwq commands list --device sim0 --state done --limit 2 --cursor CUR1"

    # The hint, run as printed, asks for the same filters from the cursor on.
    second = CliRunner().invoke(main, shlex.split(hint.removeprefix("more: "))[1:], env=env)
    assert second.exit_code == 0, second.output
    assert "more:" not in second.stderr
    assert server.requests[1].query == {
        "device": "sim0", "state": "done", "limit": "2", "cursor": "CUR1"
    }  # fmt: skip


def test_more_hint_quotes_what_the_shell_would_split(server: CannedHttpServer) -> None:
    server.reply("GET", LIST, body={"items": [row("a")], "next_cursor": "a b'c"})
    env = {"HWQ_URL": server.url, "HWQ_TOKEN": "t"}
    result = CliRunner().invoke(main, ["commands", "list"], env=env)

    assert result.exit_code == 0, result.output
    assert shlex.split(result.stderr.removeprefix("more: "))[-2:] == ["--cursor", "a b'c"]

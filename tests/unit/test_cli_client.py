"""The `hwq` client commands against a canned HTTP server: output, exit status, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hwq.cli import main

from canned_http_server import CannedHttpServer

SUBMIT = "/api/v1/devices/sim0/commands"
COMMAND = "/api/v1/commands/c1"


@pytest.fixture
def server() -> Iterator[CannedHttpServer]:
    with CannedHttpServer() as canned:
        yield canned


def hwq(server: CannedHttpServer, *args: str) -> Result:
    env = {"HWQ_URL": server.url, "HWQ_TOKEN": "t"}
    return CliRunner().invoke(main, list(args), env=env)


def command(state: str, kind: str = "line", **fields: Any) -> dict[str, Any]:
    return {"id": "c1", "device": "sim0", "kind": kind, "state": state, "analysis": None, **fields}


def test_run_submits_waits_and_prints_the_reply(server: CannedHttpServer) -> None:
    server.reply("POST", SUBMIT, 202, command("queued"))
    server.reply("GET", COMMAND, body=command("dispatched"))
    server.reply("GET", COMMAND, body=command("done", response={"text": "HWQ,SIM,sim0"}))

    result = hwq(server, "run", "sim0", "*IDN?", "--timeout", "2")

    assert result.exit_code == 0, result.output
    assert result.stdout == "HWQ,SIM,sim0\n"
    submit, *polls = server.requests
    assert submit.body == {"kind": "line", "payload": "*IDN?", "timeout_s": 2.0}
    assert len(polls) == 2
    assert all(0 < float(p.query["wait"]) <= 12 for p in polls)


def test_run_exits_1_and_says_why_when_the_command_fails(server: CannedHttpServer) -> None:
    server.reply("POST", SUBMIT, 202, command("queued"))
    server.reply("GET", COMMAND, body=command("timed_out", error="no reply within 5 s"))

    result = hwq(server, "run", "sim0", "MEAS:VOLT?")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "command c1 ended timed_out: no reply within 5 s\n"


def test_run_exits_1_when_the_wait_runs_out(server: CannedHttpServer) -> None:
    server.reply("POST", SUBMIT, 202, command("queued"))

    result = hwq(server, "run", "sim0", "SLEEP 100", "--wait", "0")

    assert result.exit_code == 1
    assert "command c1 is still queued" in result.stderr


def test_run_succeeds_on_a_reply_awaiting_manual_analysis(server: CannedHttpServer) -> None:
    manual: dict[str, Any] = {"analyzer": "manual", "params": {}, "value": None}
    server.reply("POST", SUBMIT, 202, command("queued", analysis=manual))
    responded = command("responded", analysis=manual, response={"text": "3.3"})
    server.reply("GET", COMMAND, body=responded)

    result = hwq(server, "run", "sim0", "MEAS:VOLT?", "--analysis", "manual")

    assert result.exit_code == 0, result.output
    assert result.stdout == "3.3\n"
    assert "hwq commands analyse c1" in result.stderr
    assert server.requests[0].body["analysis"] == {"analyzer": "manual", "params": {}}


def test_run_frame_sends_id_and_args_and_prints_status_and_values(
    server: CannedHttpServer,
) -> None:
    server.reply("POST", SUBMIT, 202, command("queued", kind="frame"))
    done = command("done", kind="frame", response={"status": 0, "values": [12, -3]})
    server.reply("GET", COMMAND, body=done)

    result = hwq(server, "run", "sim0", "2,5,7", "--kind", "frame")

    assert result.exit_code == 0, result.output
    assert result.stdout == "0 12 -3\n"
    assert server.requests[0].body["payload"] == {"command_id": 2, "args": [5, 7]}


def test_run_raw_encodes_text_as_base64(server: CannedHttpServer) -> None:
    server.reply("POST", SUBMIT, 202, command("done", kind="raw", response={"data": "T0s="}))

    result = hwq(server, "run", "sim0", "hi", "--kind", "raw")

    assert result.stdout == "T0s=\n"
    assert server.requests[0].body["payload"] == "aGk="


@pytest.mark.parametrize("payload", ["2,x", "", "300", "1,99999999999"])
def test_a_bad_frame_payload_is_refused_before_anything_is_sent(
    server: CannedHttpServer, payload: str
) -> None:
    result = hwq(server, "run", "sim0", payload, "--kind", "frame")

    assert result.exit_code == 2
    assert "PAYLOAD" in result.stderr
    assert server.requests == []


def test_a_bad_frame_payload_says_what_is_expected(server: CannedHttpServer) -> None:
    result = hwq(server, "run", "sim0", "2,x", "--kind", "frame")

    assert "'2,x' is not COMMAND_ID[,ARG,...] in decimal integers, e.g. 2,5,7" in result.stderr


def test_devices_list_prints_an_aligned_table(server: CannedHttpServer) -> None:
    devices = [
        {"name": "sim0", "transport": "serial", "address": "/dev/pts/3", "codec": "line",
         "host": "lab-pc", "presence": "online", "online": True, "state": 0, "queue_depth": 0},
        {"name": "probe", "transport": "http-poll", "address": None, "codec": "frame",
         "host": None, "presence": "offline", "online": False, "state": 1, "queue_depth": 12},
    ]  # fmt: skip
    server.reply("GET", "/api/v1/devices", body={"items": devices})
    server.reply("GET", "/api/v1/health", body={"recorder_pending": 0, "recorder_lag_s": 0.0})

    result = hwq(server, "devices", "list")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "name   transport  address     codec  host    presence  state  queue_depth",
        "sim0   serial     /dev/pts/3  line   lab-pc  online    0      0",
        "probe  http-poll  -           frame  -       offline   1      12",
    ]
    assert result.stderr.strip() == "ledger: up to date"


def test_devices_list_says_how_far_the_ledger_trails(server: CannedHttpServer) -> None:
    server.reply("GET", "/api/v1/devices", body={"items": []})
    server.reply("GET", "/api/v1/health", body={"recorder_pending": 42, "recorder_lag_s": 3.25})

    result = hwq(server, "devices", "list")

    assert result.exit_code == 0, result.output
    assert "ledger: 42 transitions not yet recorded, the oldest 3.2 s old" in result.stderr


def test_an_api_error_is_one_line_and_exit_1(server: CannedHttpServer) -> None:
    problem = {"title": "Not found", "status": 404, "detail": "no device named 'nope'"}
    server.reply("GET", "/api/v1/devices/nope", 404, problem)

    result = hwq(server, "devices", "show", "nope")

    assert result.exit_code == 1
    assert result.stderr == "Error: 404 Not found: no device named 'nope'\n"


def test_commands_analyse_sends_json_when_it_parses_and_text_otherwise(
    server: CannedHttpServer,
) -> None:
    server.reply("POST", "/api/v1/commands/c1/analysis", body=command("done"))

    assert hwq(server, "commands", "analyse", "c1", "3.2").stdout == "command c1 is done\n"
    hwq(server, "commands", "analyse", "c1", "looks fine")

    assert [r.body for r in server.requests] == [{"value": 3.2}, {"value": "looks fine"}]


def test_commands_list_shows_a_short_payload(server: CannedHttpServer) -> None:
    frame = command("done", kind="frame", payload={"command_id": 2, "args": [5]})
    frame["created_at"] = "2025-01-01T00:00:00Z"
    server.reply("GET", "/api/v1/commands", body={"items": [frame], "next_cursor": None})

    result = hwq(server, "commands", "list", "--device", "sim0", "--limit", "1")

    assert result.stdout.splitlines()[1].split() == [
        "c1", "sim0", "done", "frame", "2025-01-01T00:00:00Z", "2,5"
    ]  # fmt: skip
    assert server.requests[0].query == {"device": "sim0", "limit": "1"}

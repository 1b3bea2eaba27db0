"""Replies reach the command they answer, never the next user's.

Each test is one defect seen against `hwq up`: a reply that came after its command had timed
out, a worker killed mid-command, a raw payload holding two lines, and a raw payload left
without its terminator in the device's input, each handed to the next user's `*IDN?`.
"""

from __future__ import annotations

import base64
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bench.harness_http import Reply
from bench.local_stack import TERMINAL, Stack, running_stack

# A 1 MiB raw payload travels as 1.4 MB of base64.
BODY_LIMIT_BYTES = 4 * 1024 * 1024
ONE_MIB = 1024 * 1024
# One long-poll round while waiting for a command to end.
POLL_S = 2


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shared stack, with a body limit that lets a 1 MiB raw payload through."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-port"), redis_url, HWQ_MAX_BODY_BYTES=str(BODY_LIMIT_BYTES)
    ) as stack:
        yield stack


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_command(
    stack: Stack, device: str, body: dict[str, Any], token: str | None = None
) -> Reply:
    return stack.request("POST", f"/devices/{device}/commands", token=token, body=body)


def submitted(stack: Stack, device: str, body: dict[str, Any], token: str | None = None) -> str:
    reply = post_command(stack, device, body, token)
    assert reply.status == 202, reply.body
    return str(reply.body["id"])


def settled(stack: Stack, command_id: str, seconds: float = 30) -> dict[str, Any]:
    """The command once terminal, long-polled in short rounds (each well under a minute)."""
    deadline = time.monotonic() + seconds
    while True:
        command = dict(stack.request("GET", f"/commands/{command_id}?wait={POLL_S}").body)
        if command["state"] in TERMINAL or time.monotonic() > deadline:
            return command


def operator_token(stack: Stack, name: str) -> str:
    return stack.hwq("token", "create", "--role", "operator", "--name", name).strip()


def late_replies(stack: Stack, command_id: str) -> list[dict[str, Any]]:
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    return [e for e in events if (e["detail"] or "").startswith("late_reply")]


def assert_own_identity(command: dict[str, Any]) -> None:
    assert command["state"] == "done", command
    assert command["response"]["text"].startswith("HWQ,SIM"), command


def test_a_reply_after_its_timeout_stays_with_its_command_not_the_next_users(
    stack: Stack, device_name: str, redis_url: str
) -> None:
    stack.add_sim_device(device_name)
    other_user = operator_token(stack, "bob")
    sleeper = stack.submit(device_name, "SLEEP 4000", timeout_s=0.5)
    idn = submitted(stack, device_name, {"kind": "line", "payload": "*IDN?"}, other_user)
    assert settled(stack, sleeper)["state"] == "timed_out"
    assert_own_identity(settled(stack, idn, 60))
    # The late reply is kept as an event of the command that timed out; its state stays.
    [late] = late_replies(stack, sleeper)
    assert late["state"] == "timed_out" and "OK" in late["detail"]
    assert stack.request("GET", f"/commands/{sleeper}").body["state"] == "timed_out"
    # And its bytes show on the device's live stream, as everything it sends does.
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(f"{stack.key_prefix}:stream:{device_name}")
    rx = b"".join(fields[b"data"] for _, fields in entries if fields[b"kind"] == b"rx")
    assert b"OK\n" in rx


def test_a_worker_restarted_after_a_kill_mid_command_never_hands_its_reply_on(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    worker = f"device-{device_name}"
    # The device answers well after the new worker is up: the answer lands on the new
    # worker's open port, where the next command would take it for its own.
    sleeper = stack.submit(device_name, "SLEEP 8000", timeout_s=12)
    stack.wait_for(lambda: "SLEEP 8000" in stack.sim_log(device_name), "the command on the wire")
    stack.stop(worker, signal.SIGKILL)
    stack.start_worker(device_name)
    # The old worker's presence outlives it; wait for the new one's own start.
    stack.wait_for(lambda: stack.log(worker).count("device worker ready") >= 2, "the new worker")
    idn = settled(stack, stack.submit(device_name, "*IDN?", timeout_s=20), 90)
    assert idn["response"] != {"text": "OK"}, idn
    if idn["state"] == "failed":  # a clear refusal is allowed; someone else's answer is not
        assert "not clean" in idn["error"], idn
    else:
        assert_own_identity(idn)
        assert ["OK" in e["detail"] for e in late_replies(stack, sleeper)] == [True]


def test_a_raw_payload_holding_two_lines_never_reaches_a_line_device(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    two_lines = {"kind": "raw", "payload": b64(b"ECHO one\nSLEEP 1500\n")}
    refused = post_command(stack, device_name, two_lines)
    assert refused.status == 422, refused.body
    assert refused.body["errors"][0]["field"] == "payload"
    # One line, with or without its terminator, is one command.
    for payload in (b"ECHO one\n", b"ECHO two"):
        raw = settled(
            stack, submitted(stack, device_name, {"kind": "raw", "payload": b64(payload)})
        )
        assert raw["state"] == "done", raw
    assert_own_identity(settled(stack, stack.submit(device_name, "*IDN?")))
    log = stack.sim_log(device_name)
    assert "SLEEP 1500" not in log
    assert re.search(r" ECHO two$", log, re.MULTILINE), log
    listed = stack.request("GET", f"/commands?device={device_name}").body["items"]
    assert len(listed) == 3  # the refused one was never queued


def test_a_command_kind_must_fit_the_device_codec(stack: Stack, device_name: str) -> None:
    line_payload = {"kind": "line", "payload": "*IDN?"}
    frame_payload = {"kind": "frame", "payload": {"command_id": 0, "args": []}}
    raw_payload = {"kind": "raw", "payload": b64(b"\x01\n\x02")}
    fits = {
        "line": {"line": 202, "frame": 422, "raw": 422},  # two lines in one raw payload
        "raw": {"line": 202, "frame": 422, "raw": 202},
        "frame": {"line": 422, "frame": 202, "raw": 202},
    }
    for codec, expected in fits.items():
        name = f"{device_name}-{codec}"
        registered = stack.request(
            "POST", "/devices", body={"name": name, "address": "loop://", "codec": codec}
        )
        assert registered.status == 201, registered.body
        for kind, body in (("line", line_payload), ("frame", frame_payload), ("raw", raw_payload)):
            reply = post_command(stack, name, body)
            assert reply.status == expected[kind], (codec, kind, reply.body)
            if reply.status == 422:
                assert reply.headers["Content-Type"] == "application/problem+json"
                assert codec in reply.body["detail"] or "line" in reply.body["detail"]
    # A line device may take several lines in one raw payload when its options say so.
    multiline = f"{device_name}-multi"
    registered = stack.request(
        "POST",
        "/devices",
        body={"name": multiline, "address": "loop://", "options": {"raw_multiline": True}},
    )
    assert registered.status == 201, registered.body
    assert post_command(stack, multiline, raw_payload).status == 202


def test_device_options_that_keep_the_port_clean_are_checked_at_registration(
    stack: Stack, device_name: str
) -> None:
    for options in ({"idle_ms": "fast"}, {"settle_s": -1}, {"line_ending": ";"},
                    {"raw_multiline": "yes"}):  # fmt: skip
        reply = stack.request(
            "POST",
            "/devices",
            body={"name": device_name, "address": "loop://", "options": options},
        )
        assert reply.status == 422, (options, reply.body)
        # The error names the option itself.
        assert reply.body["errors"][0]["field"] == f"options.{next(iter(options))}"
        assert next(iter(options)) in reply.body["errors"][0]["message"]


def test_a_raw_payload_without_its_terminator_does_not_poison_the_next_line(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    big = submitted(
        stack, device_name, {"kind": "raw", "payload": b64(b"A" * ONE_MIB), "timeout_s": 20}
    )
    idn = stack.submit(device_name, "*IDN?", timeout_s=20)
    assert_own_identity(settled(stack, idn, 90))
    finished = settled(stack, big, 90)
    assert finished["state"] == "done", {k: v for k, v in finished.items() if k != "response"}
    assert re.search(r" \*IDN\?$", stack.sim_log(device_name), re.MULTILINE)

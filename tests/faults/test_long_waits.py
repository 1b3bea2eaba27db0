"""Waits longer than redis-py's default socket timeout (5 s), over HTTP and through the CLI:
each ends with the command, never with a 503 after five seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.local_stack import Stack

# Longer than redis-py's 5 s socket timeout, and than any single block of a wait.
SLEEP_MS = 7000


def _client_env(stack: Stack) -> dict[str, str]:
    return {**stack.env(), "HWQ_URL": f"http://127.0.0.1:{stack.api_port}",
            "HWQ_TOKEN": stack.admin_token}  # fmt: skip


def _hwq_client(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hwq.cli", *args],
        env=_client_env(stack), capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def test_a_wait_of_ten_seconds_over_http_ends_with_the_command(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, f"SLEEP {SLEEP_MS}", timeout_s=10)
    started = time.monotonic()
    reply = stack.request("GET", f"/commands/{command_id}?wait=10")
    assert reply.status == 200, reply.body
    assert reply.body["state"] == "done" and reply.body["response"] == {"text": "OK"}
    assert time.monotonic() - started > 5


def test_a_wait_that_outlasts_its_command_returns_it_as_it_stands(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "SLEEP 9000", timeout_s=10)
    started = time.monotonic()
    reply = stack.request("GET", f"/commands/{command_id}?wait=6")
    assert reply.status == 200, reply.body
    assert reply.body["state"] == "dispatched"
    assert 6 <= time.monotonic() - started < 9


def test_hwq_run_waits_for_a_seven_second_command(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    result = _hwq_client(stack, "run", device_name, f"SLEEP {SLEEP_MS}", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


def test_hwq_commands_show_waits_past_five_seconds(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "SLEEP 6000", timeout_s=10)
    result = _hwq_client(stack, "commands", "show", command_id, "--wait", "8")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "done"

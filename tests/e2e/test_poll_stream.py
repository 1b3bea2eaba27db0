"""An HTTP-polling device's traffic on its live stream: what a poll hands out (tx) and what the
device posts back (rx), followed by an SSE observer from outside the API."""

from __future__ import annotations

import pytest

from bench.local_stack import Stack

from stream_observer import Observer, command_state_seen

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def poll_device(stack: Stack, name: str) -> str:
    """Register an http-poll line device and return its device token."""
    body = {"name": name, "transport": "http-poll", "codec": "line"}
    assert stack.request("POST", "/devices", body=body).status == 201
    return stack.hwq("token", "create", "--role", "device", "--name", f"{name}-dev",
                     "--device", name).strip()  # fmt: skip


def collect(stack: Stack, device: str, token: str, wait: str = "5") -> str:
    polled = stack.request("GET", f"/devices/{device}/next?wait={wait}", token=token)
    assert polled.status == 200, polled.body
    return str(polled.body["id"])


def answer(stack: Stack, command_id: str, token: str, body: dict[str, str]) -> int:
    path = f"/commands/{command_id}/response"
    return stack.request("POST", path, token=token, body=body).status


def test_a_polled_command_and_its_reply_are_on_the_stream(stack: Stack, device_name: str) -> None:
    token = poll_device(stack, device_name)
    observer = Observer(stack, device_name)
    try:
        first = stack.submit(device_name, "MEAS:VOLT?", timeout_s=30)
        # A long poll (held by the front door) and a poll with no wait take different paths.
        assert collect(stack, device_name, token) == first
        assert answer(stack, first, token, {"text": "4.99"}) == 200
        second = stack.submit(device_name, "*IDN?", timeout_s=30)
        assert collect(stack, device_name, token, wait="0") == second
        assert answer(stack, second, token, {"error": "no such query"}) == 200
        observer.wait_until(lambda e: command_state_seen(e, second, "failed"), "the second end")
        shown = [
            (e.kind, e.data.get("command_id") or e.data.get("id"), e.data.get("state"),
             e.data.get("text") if e.kind in ("rx", "tx") else None)
            for e in observer.events
        ]  # fmt: skip
        assert shown == [
            ("command", first, "dispatched", None),
            ("tx", first, None, "MEAS:VOLT?"),
            ("rx", None, None, "4.99"),
            ("command", first, "done", None),
            ("command", second, "dispatched", None),
            ("tx", second, None, "*IDN?"),
            ("rx", None, None, '{"error":"no such query"}'),
            ("command", second, "failed", None),
        ]
    finally:
        observer.close()


def test_a_late_poll_reply_is_shown_on_the_stream(stack: Stack, device_name: str) -> None:
    token = poll_device(stack, device_name)
    observer = Observer(stack, device_name)
    try:
        command_id = stack.submit(device_name, "SLOW", timeout_s=1)
        assert collect(stack, device_name, token) == command_id
        assert stack.wait(command_id, 60)["state"] == "timed_out"
        assert answer(stack, command_id, token, {"text": "too late"}) == 409
        observer.wait_until(
            lambda events: any(e.kind == "rx" and e.data["text"] == "too late" for e in events),
            "the late reply",
        )
    finally:
        observer.close()

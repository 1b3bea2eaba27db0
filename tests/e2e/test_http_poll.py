"""HTTP-polling devices over real API processes: device tokens, next, response, timeouts."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from bench.local_stack import Stack, running_stack

pytestmark = pytest.mark.timeout(300)


def poll_device(stack: Stack, name: str, **options: object) -> str:
    """Register an http-poll device and return its device token."""
    body = {"name": name, "transport": "http-poll", "codec": "line", **options}
    reply = stack.request("POST", "/devices", body=body)
    assert reply.status == 201, reply.body
    return stack.hwq("token", "create", "--role", "device", "--name", f"{name}-dev",
                     "--device", name).strip()  # fmt: skip


def test_a_device_token_reaches_its_own_device_only(stack: Stack, device_name: str) -> None:
    token = poll_device(stack, device_name)
    other = f"{device_name}x"
    poll_device(stack, other)
    command_id = stack.submit(other, "ECHO theirs")
    mine = stack.submit(device_name, "ECHO mine")

    # Not a reader, not a submitter, not another device's poller or answerer.
    assert stack.request("GET", f"/commands/{command_id}", token=token).status == 403
    assert stack.request("GET", f"/commands/{mine}", token=token).status == 403
    assert stack.request("GET", "/commands", token=token).status == 403
    assert stack.request("GET", "/devices", token=token).status == 403
    submit = stack.request(
        "POST", f"/devices/{device_name}/commands", token=token,
        body={"kind": "line", "payload": "ECHO x"},
    )  # fmt: skip
    assert submit.status == 403
    assert stack.request("GET", f"/devices/{other}/next?wait=0", token=token).status == 403
    answer = stack.request(
        "POST", f"/commands/{command_id}/response", token=token, body={"text": "forged"}
    )
    assert answer.status == 403
    # An operator is no polling device either.
    operator = stack.hwq("token", "create", "--role", "operator", "--name", "op").strip()
    assert stack.request("GET", f"/devices/{device_name}/next", token=operator).status == 403
    # The other device's command was untouched by all of that.
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "queued"


def test_poll_collects_and_answers_a_command(stack: Stack, device_name: str) -> None:
    token = poll_device(stack, device_name)
    assert stack.request("GET", f"/devices/{device_name}/next?wait=0", token=token).status == 204
    command_id = stack.submit(device_name, "ECHO hello", timeout_s=30)

    polled = stack.request("GET", f"/devices/{device_name}/next?wait=5", token=token)
    assert polled.status == 200, polled.body
    assert polled.body["id"] == command_id
    assert polled.body["payload"] == "ECHO hello"
    assert polled.body["state"] == "dispatched"
    assert stack.device(device_name)["state"] == 2  # collected

    # A reply that does not fit a line command names what is wrong.
    wrong = stack.request("POST", f"/commands/{command_id}/response", token=token,
                          body={"data": "aGk="})  # fmt: skip
    assert wrong.status == 422
    assert {e["field"] for e in wrong.body["errors"]} == {"data", "text"}

    answered = stack.request(
        "POST", f"/commands/{command_id}/response", token=token, body={"text": "hello"}
    )
    assert answered.status == 200, answered.body
    assert answered.body["state"] == "done"
    assert answered.body["response"] == {"text": "hello"}
    again = stack.request(
        "POST", f"/commands/{command_id}/response", token=token, body={"text": "twice"}
    )
    assert again.status == 409
    assert stack.wait(command_id)["response"] == {"text": "hello"}


def test_an_error_reply_fails_the_command(stack: Stack, device_name: str) -> None:
    token = poll_device(stack, device_name)
    command_id = stack.submit(device_name, "ECHO x", timeout_s=30)
    assert stack.request("GET", f"/devices/{device_name}/next?wait=5", token=token).status == 200
    failed = stack.request("POST", f"/commands/{command_id}/response", token=token,
                           body={"error": "no such instrument"})  # fmt: skip
    assert failed.status == 200, failed.body
    assert failed.body["state"] == "failed"
    assert "no such instrument" in failed.body["error"]


def test_an_unanswered_command_times_out_and_a_late_reply_is_kept(
    stack: Stack, device_name: str
) -> None:
    token = poll_device(stack, device_name)
    command_id = stack.submit(device_name, "SLOW", timeout_s=1)
    assert stack.request("GET", f"/devices/{device_name}/next?wait=5", token=token).status == 200

    ended = stack.wait(command_id, seconds=30)
    assert ended["state"] == "timed_out", ended
    late = stack.request(
        "POST", f"/commands/{command_id}/response", token=token, body={"text": "too late"}
    )
    assert late.status == 409
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    assert any((e["detail"] or "").startswith("late_reply") and "too late" in e["detail"]
               for e in events)  # fmt: skip
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "timed_out"


def test_cancelled_and_expired_commands_are_never_handed_out(
    stack: Stack, device_name: str
) -> None:
    token = poll_device(stack, device_name)
    expiring = stack.submit(device_name, "ECHO expiring", expires_s=0.5)
    cancelled = stack.submit(device_name, "ECHO cancelled")
    assert stack.request("POST", f"/commands/{cancelled}/cancel").status == 200
    time.sleep(1.5)
    kept = stack.submit(device_name, "ECHO kept")

    polled = stack.request("GET", f"/devices/{device_name}/next?wait=5", token=token)
    assert polled.status == 200
    assert polled.body["id"] == kept
    assert stack.request("GET", f"/devices/{device_name}/next?wait=1", token=token).status == 204
    assert stack.wait(expiring)["state"] == "expired"
    assert stack.wait(cancelled)["state"] == "cancelled"


def test_presence_follows_the_polls(stack: Stack, device_name: str) -> None:
    token = poll_device(stack, device_name)
    assert stack.device(device_name)["online"] is False
    assert stack.request("GET", f"/devices/{device_name}/next?wait=0", token=token).status == 204
    seen = stack.device(device_name)
    assert seen["online"] is True
    assert seen["last_seen"]
    # Silent past the poll's wait and the grace: offline again.
    stack.wait_for(lambda: not stack.device(device_name)["online"], "offline", timeout=40)


async def _poll(port: int, path: str, token: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()
    writer.close()
    return int(status_line.split()[1])


def test_many_held_polls_cost_no_thread_each(tmp_path, redis_url: str) -> None:
    """200 polls held at once against an API with 4 threads all end, one with the command."""
    prefix = f"polls-{uuid.uuid4().hex[:6]}"
    with running_stack(tmp_path, redis_url, prefix, HWQ_API_THREADS="4",
                       HWQ_MAX_WAITS_PER_TOKEN="500") as stack:  # fmt: skip
        token = poll_device(stack, "many")
        path = "/api/v1/devices/many/next?wait=5"

        async def run() -> list[int]:
            polls = [asyncio.ensure_future(_poll(stack.api_port, path, token))
                     for _ in range(200)]  # fmt: skip
            await asyncio.sleep(1.0)
            await asyncio.to_thread(stack.submit, "many", "ECHO one")
            return await asyncio.wait_for(asyncio.gather(*polls), timeout=120)

        started = time.monotonic()
        statuses = asyncio.run(run())
        elapsed = time.monotonic() - started
    assert statuses.count(200) == 1
    assert statuses.count(204) == 199
    # Four threads holding five seconds each would need 250 s for 200 polls.
    assert elapsed < 100, elapsed

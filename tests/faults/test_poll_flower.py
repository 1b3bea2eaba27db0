"""What Flower shows of an HTTP-polling device's commands: the API sends the task events a
device worker would, and the server worker the timeout of a command nobody answered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bench.local_stack import Stack, running_stack

from flower_watch import FlowerWatch

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("hwq-poll-flower"), redis_url) as stack:
        yield stack


def _answer_next(stack: Stack, device: str, token: str, text: str | None) -> str:
    """Collect the device's next command and answer it with `text` (None: leave it)."""
    polled = stack.request("GET", f"/devices/{device}/next?wait=10", token=token)
    assert polled.status == 200, polled.body
    command_id = str(polled.body["id"])
    if text is not None:
        answered = stack.request(
            "POST", f"/commands/{command_id}/response", token=token, body={"text": text}
        )
        assert answered.status == 200, answered.body
    return command_id


def test_polled_commands_show_in_flower(stack: Stack) -> None:
    device = f"p{uuid.uuid4().hex[:8]}"
    body = {"name": device, "transport": "http-poll"}
    assert stack.request("POST", "/devices", body=body).status == 201
    token = stack.hwq("token", "create", "--role", "device", "--name", device,
                      "--device", device).strip()  # fmt: skip
    flower = FlowerWatch(stack)

    # Flower counts only the events after it started: wait until it shows one.
    for _ in range(6):
        stack.submit(device, "ECHO seen")
        command_id = _answer_next(stack, device, token, "seen")
        try:
            task = flower.wait_task(command_id, lambda t: t["state"] == "SUCCESS", timeout=10)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("Flower never showed a polled command")
    assert "seen" in task["result"]
    assert task["worker"] == f"{device}@http-poll"

    stack.submit(device, "ECHO never", timeout_s=0.5)
    unanswered = _answer_next(stack, device, token, None)
    assert stack.wait(unanswered)["state"] == "timed_out"
    failed = flower.wait_task(unanswered, lambda t: t["state"] == "FAILURE")
    assert failed["exception"].startswith("TimedOut("), failed

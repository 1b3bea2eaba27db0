"""A device's queue is a real Celery queue: `hwq.execute` published by any Celery client set up
as DESIGN §1 says (kombu's `global_keyprefix` of hwq's keys) runs like the API's own message,
and only once.

Guards against: a device worker that ran only the messages hwq built itself, so a command
published by another Celery client was lost or ran a second time beside the API's message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from celery import Celery

from bench.local_stack import Stack

# How long a worker may take to pop and settle a message on a loaded test machine.
SETTLE_S = 60


@contextmanager
def celery_client(stack: Stack) -> Iterator[Celery]:
    """A plain Celery client, configured only as the README tells any client to be."""
    app = Celery(
        "someone-else",
        broker=stack.redis_url,
        set_as_current=False,
        # HWQ_KEY_PREFIX (default "hwq") followed by ":q:".
        broker_transport_options={"global_keyprefix": f"{stack.key_prefix}:q:"},
    )
    try:
        yield app
    finally:
        app.close()


def _queue_key(stack: Stack, device: str) -> str:
    return f"{stack.key_prefix}:q:hwq.device.{device}"


def _lines_received(stack: Stack, device: str, payload: str) -> int:
    # Each line of the simulator's log: when it was received, then the line.
    return sum(line.split(" ", 1)[-1] == payload for line in stack.sim_log(device).splitlines())


@pytest.fixture
def broker(stack: Stack) -> Iterator[redis.Redis]:
    """A client on the stack's Redis, to look into the device's queue."""
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def _accepted_while_unserved(stack: Stack, device: str) -> tuple[str, str]:
    """A command the API accepted for a device whose worker is not running yet, and its line."""
    stack.add_sim_device(device, worker=False)
    payload = f"ECHO once-{uuid.uuid4().hex[:8]}"
    return stack.submit(device, payload), payload


def _publish_and_serve(stack: Stack, device: str, command_id: str) -> dict[str, Any]:
    """Publish the command from another client, start the device's worker, and wait."""
    with celery_client(stack) as client:
        client.send_task("hwq.execute", args=[command_id], queue=f"hwq.device.{device}")
    stack.start_worker(device)
    return stack.wait(command_id, SETTLE_S)


def test_a_command_published_twice_by_api_and_any_client_runs_once(
    stack: Stack, device_name: str, broker: redis.Redis
) -> None:
    command_id, payload = _accepted_while_unserved(stack, device_name)

    command = _publish_and_serve(stack, device_name, command_id)

    assert command["state"] == "done", command
    assert command["response"] == {"text": payload.removeprefix("ECHO ")}
    assert command["attempts"] == 1
    # The worker took both messages from the one Celery queue, and refused the second.
    stack.wait_for(
        lambda: broker.llen(_queue_key(stack, device_name)) == 0
        and "delivery inert" in stack.log(f"device-{device_name}"),
        "the second delivery to be taken and refused",
        timeout=SETTLE_S,
    )
    time.sleep(1)  # a second run, had there been one, would have reached the port by now
    assert _lines_received(stack, device_name, payload) == 1, stack.sim_log(device_name)


def test_a_command_whose_only_message_came_from_another_client_runs_once(
    stack: Stack, device_name: str, broker: redis.Redis
) -> None:
    command_id, payload = _accepted_while_unserved(stack, device_name)
    # The API's own message is gone; only another client's publish is left to run it.
    assert broker.delete(_queue_key(stack, device_name)) == 1

    command = _publish_and_serve(stack, device_name, command_id)

    assert command["state"] == "done", command
    assert command["response"] == {"text": payload.removeprefix("ECHO ")}
    assert _lines_received(stack, device_name, payload) == 1, stack.sim_log(device_name)

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

import redis
from celery import Celery

from worker_host.local_stack import Stack

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


def _wait_until_popped(stack: Stack, broker: redis.Redis, device: str, command_id: str) -> None:
    """Until the worker has taken every message and logged the inert delivery of the other."""
    log_name = f"device-{device}"
    stack.wait_for(
        lambda: broker.llen(_queue_key(stack, device)) == 0
        and stack.log(log_name).count("delivery inert") >= 1,
        "the second delivery to be taken and refused",
        timeout=SETTLE_S,
    )


def test_a_command_published_twice_by_api_and_any_client_runs_once(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    payload = f"ECHO twice-{uuid.uuid4().hex[:8]}"
    command_id = stack.submit(device_name, payload)
    broker = redis.Redis.from_url(stack.redis_url)
    try:
        with celery_client(stack) as client:
            client.send_task("hwq.execute", args=[command_id], queue=f"hwq.device.{device_name}")
        # Both messages sit in the one Celery queue the device's worker consumes.
        assert broker.llen(_queue_key(stack, device_name)) == 2

        stack.start_worker(device_name)
        command = stack.wait(command_id, SETTLE_S)
        assert command["state"] == "done", command
        assert command["response"] == {"text": payload.removeprefix("ECHO ")}
        assert command["attempts"] == 1
        _wait_until_popped(stack, broker, device_name, command_id)
    finally:
        broker.close()
    time.sleep(1)  # a second run, had there been one, would have reached the port by now
    assert _lines_received(stack, device_name, payload) == 1, stack.sim_log(device_name)


def test_a_command_whose_only_message_came_from_another_client_runs_once(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    payload = f"ECHO foreign-{uuid.uuid4().hex[:8]}"
    command_id = stack.submit(device_name, payload)
    broker = redis.Redis.from_url(stack.redis_url)
    try:
        # The API's own message is gone; only another client's publish is left to run it.
        assert broker.delete(_queue_key(stack, device_name)) == 1
        with celery_client(stack) as client:
            client.send_task("hwq.execute", args=[command_id], queue=f"hwq.device.{device_name}")
        assert broker.llen(_queue_key(stack, device_name)) == 1

        stack.start_worker(device_name)
        command = stack.wait(command_id, SETTLE_S)
    finally:
        broker.close()
    assert command["state"] == "done", command
    assert command["response"] == {"text": payload.removeprefix("ECHO ")}
    assert _lines_received(stack, device_name, payload) == 1, stack.sim_log(device_name)

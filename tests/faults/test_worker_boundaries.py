"""A device worker runs its own device's commands only, whatever reaches it, and Flower's actions
never claim to do what they cannot.

Guards against: a device worker told through remote control (Flower's "add consumer") to
consume another device's queue ran that device's commands on its own port, and Flower's
revoke answered "Revoked" for a command that then ran.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from bench.local_stack import Stack
from config import Settings
from tasks.celery_app import broker_key_prefix, create_celery
from tasks.queues import device_queue

from flower_watch import FlowerWatch

# How long a command of a device without a worker is watched for a run that must not happen.
UNSERVED_WATCH_S = 4.0


@pytest.fixture
def celery_client(stack: Stack) -> Iterator[Celery]:
    """A Celery client of the stack's broker, outside every hwq process."""
    app = create_celery(Settings(redis_url=stack.redis_url, key_prefix=stack.key_prefix))
    yield app
    app.close()


@pytest.fixture
def other_device() -> str:
    """A second device name of this test's own."""
    return f"o{uuid.uuid4().hex[:8]}"


def _broker_list(stack: Stack, device: str) -> str:
    return broker_key_prefix(stack.key_prefix) + device_queue(device)


def _stays_queued(stack: Stack, command_id: str, word: str, bystander: str) -> None:
    """The command waits for its own device's worker; the other device never hears of it."""
    time.sleep(UNSERVED_WATCH_S)
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "queued"
    assert word not in stack.sim_log(bystander)


def _runs_on_its_own_device(stack: Stack, command_id: str, word: str, owner: str) -> None:
    stack.start_worker(owner)
    done = stack.wait(command_id, 60)
    assert done["state"] == "done" and done["response"]["text"] == word, done
    assert stack.sim_log(owner).count(f"ECHO {word}") == 1


def test_a_device_worker_refuses_to_consume_another_devices_queue(
    stack: Stack, device_name: str, other_device: str, celery_client: Celery
) -> None:
    stack.add_sim_device(device_name)
    stack.add_sim_device(other_device, worker=False)

    replies = celery_client.control.add_consumer(
        device_queue(other_device), destination=[f"{device_name}@e2e"], reply=True, timeout=10
    )

    assert len(replies) == 1, replies
    answer = replies[0][f"{device_name}@e2e"]
    assert "ok" not in answer and device_queue(device_name) in answer["error"], answer
    word = uuid.uuid4().hex
    command_id = stack.submit(other_device, f"ECHO {word}")
    _stays_queued(stack, command_id, word, device_name)
    _runs_on_its_own_device(stack, command_id, word, other_device)


def test_another_devices_command_reaching_a_worker_is_refused_and_goes_home(
    stack: Stack, device_name: str, other_device: str, redis_client: redis.Redis
) -> None:
    stack.add_sim_device(device_name)
    stack.add_sim_device(other_device, worker=False)
    word = uuid.uuid4().hex
    command_id = stack.submit(other_device, f"ECHO {word}")

    # The command's only message leaves its device's queue for the other worker's, as when
    # that worker's consumer took it from there.
    moved = redis_client.lmove(
        _broker_list(stack, other_device), _broker_list(stack, device_name), "RIGHT", "LEFT"
    )

    assert moved is not None
    stack.wait_for(lambda: redis_client.llen(_broker_list(stack, other_device)) == 1,
                   "the message back in its own device's queue", timeout=30)  # fmt: skip
    assert "delivery refused" in stack.log(f"device-{device_name}")
    _stays_queued(stack, command_id, word, device_name)
    _runs_on_its_own_device(stack, command_id, word, other_device)


def test_flower_refuses_revoke_and_add_consumer_instead_of_pretending(
    stack: Stack, device_name: str, other_device: str
) -> None:
    stack.add_sim_device(device_name)
    stack.add_sim_device(other_device, worker=False)
    flower = FlowerWatch(stack)
    command_id = stack.submit(other_device, "ECHO revoked?")

    revoke = flower.call("POST", f"/api/task/revoke/{command_id}?terminate=true")
    queue = device_queue(other_device)
    add = flower.call("POST", f"/api/worker/queue/add-consumer/{device_name}@e2e?queue={queue}")

    assert revoke[0] == 403, revoke
    assert add[0] == 403, add
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "queued"
    # The API is where a queued command is cancelled.
    cancelled = stack.request("POST", f"/commands/{command_id}/cancel").body
    assert cancelled["state"] == "cancelled"

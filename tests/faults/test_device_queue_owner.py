"""A device's queue has one reader: the command thread, never Celery's own consumer.

Guards against: a Celery or kombu release whose consumer no longer lets a bootstep take a
queue off it (`task_consumer.cancel_by_queue` in worker_host/device_worker.py). Its consumer
would then pop the device's next message while a command runs and hold it, unseen by the
command thread, as a prefetched task.
"""

from __future__ import annotations

import time

import redis

from bench.local_stack import Stack
from tasks.celery_app import broker_key_prefix
from tasks.queues import device_queue

# The running command, long enough to look at the queue behind it.
BUSY_MS = 3000


def test_the_next_message_waits_in_redis_while_a_command_runs(
    stack: Stack, device_name: str, redis_client: redis.Redis
) -> None:
    stack.add_sim_device(device_name)
    running = stack.submit(device_name, f"SLEEP {BUSY_MS}", timeout_s=30)
    stack.wait_for(
        lambda: stack.request("GET", f"/commands/{running}").body["state"] == "dispatched",
        "the first command running",
        timeout=30,
    )
    queue_key = broker_key_prefix(stack.key_prefix) + device_queue(device_name)

    waiting = stack.submit(device_name, "*IDN?")
    time.sleep(BUSY_MS / 1000 / 3)  # a consumer that reads the queue takes the message now

    depth = redis_client.llen(queue_key)
    # Read after the depth: a command still running then was running when it was read.
    assert stack.request("GET", f"/commands/{running}").body["state"] == "dispatched"
    assert depth == 1, "the next message left the queue while the device was busy"
    assert stack.request("GET", f"/commands/{waiting}").body["state"] == "queued"
    assert stack.wait(waiting, 60)["state"] == "done"

"""Nothing accepted is lost: worker crashes and Redis data loss end every command somewhere."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import redis

from bench.local_stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose leases lapse two seconds after a command's timeout."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-crash"), redis_url, HWQ_LEASE_GRACE_S="2"
    ) as stack:
        yield stack


def _wait_state(stack: Stack, command_id: str, state: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = stack.request("GET", f"/commands/{command_id}").body
        if body["state"] == state:
            return dict(body)
        time.sleep(0.2)
    raise AssertionError(f"{command_id} is {body['state']}, never {state}")


def test_a_worker_killed_mid_command_leaves_it_interrupted(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "SLEEP 3000", timeout_s=2)
    # Killed once the device has the command: mid-command, not between claim and write.
    stack.wait_for(lambda: "SLEEP 3000" in stack.sim_log(device_name), "the command on the wire")
    stack.stop(f"device-{device_name}", signal.SIGKILL)
    interrupted = stack.wait(command_id, 20)
    assert interrupted["state"] == "interrupted"
    assert interrupted["error"]
    stack.start_worker(device_name)
    time.sleep(3)  # any redelivery of the old message must stay inert
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "interrupted"
    assert stack.sim_log(device_name).count("SLEEP 3000") == 1


def test_an_idempotent_command_is_run_again_after_a_crash(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name)
    command_id = stack.submit(device_name, "SLEEP 2500", timeout_s=4, idempotent=True)
    _wait_state(stack, command_id, "dispatched")
    stack.stop(f"device-{device_name}", signal.SIGKILL)
    requeued = _wait_state(stack, command_id, "queued", timeout=20)
    assert requeued["attempts"] == 1
    stack.start_worker(device_name)
    done = stack.wait(command_id, 30)
    assert done["state"] == "done" and done["attempts"] == 2
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    states = [e["state"] for e in events]
    assert states == ["queued", "dispatched", "queued", "dispatched", "responded", "done"]


def test_queued_commands_survive_redis_losing_its_data(
    stack: Stack, device_name: str, redis_url: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "ECHO survived")
    client = redis.Redis.from_url(redis_url)
    time.sleep(1)  # let the recorder copy the submission
    keys = list(client.scan_iter(match=f"{stack.key_prefix}:*", count=1000))
    client.delete(*keys)
    stack.wait_for(lambda: client.exists(f"{stack.key_prefix}:cmd:{command_id}"), "recovery")
    stack.start_worker(device_name)
    done = stack.wait(command_id, 30)
    assert done["state"] == "done"
    assert done["response"]["text"] == "survived"

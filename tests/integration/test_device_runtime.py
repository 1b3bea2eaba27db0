"""The device runtime's last check before writing, on a real Redis and pyserial's loop://."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery

from tasks.lifecycle import State
from tasks.live_store import LiveStore
from worker_host.device_runtime import DeviceRuntime

from command_factory import command_values

DEVICE = "dev0"
WORKER = "dev0@host"
# Short, so a test can outlast half of it; the runtime re-reads state past that share.
LEASE_GRACE_S = 0.4


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    live = LiveStore(redis_client, key_prefix, lease_grace_s=LEASE_GRACE_S)
    # pyserial's loopback port: the reply to a line is the line itself.
    live.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    return live


@pytest.fixture
def runtime(live: LiveStore) -> Iterator[DeviceRuntime]:
    # No analysis is asked for, so nothing is published through this app.
    device_runtime = DeviceRuntime(live, Celery("device-runtime-test"), DEVICE, WORKER)
    yield device_runtime
    device_runtime.close()


def _queued(live: LiveStore) -> str:
    values = command_values(DEVICE, payload="ECHO loop", timeout_s=2.0)
    assert live.create(values, queue_cap=100).moved
    return str(values["id"])


def _commands_from_clients(client: redis.Redis, action: Callable[[], None]) -> list[str]:
    """The commands clients (not scripts) sent to Redis while `action` ran."""
    end_marker = f"end-{time.monotonic_ns()}"
    with client.monitor() as monitor:
        action()
        client.echo(end_marker)
        seen = []
        while (entry := monitor.next_command())["command"] != f"ECHO {end_marker}":
            if entry.get("client_type") != "lua":
                seen.append(entry["command"])
    return seen


def test_a_fresh_claim_is_the_last_check_and_the_reply_is_recorded(
    live: LiveStore, runtime: DeviceRuntime
) -> None:
    command_id = _queued(live)
    runtime.execute(command_id)  # warm: opens the port and reads the device's settings
    command_id = _queued(live)
    runtime.early_claims.send(command_id)
    # A busy machine may start the command's thread some milliseconds after the claim.
    time.sleep(0.05)
    sent = _commands_from_clients(live.redis, lambda: runtime.execute(command_id))
    command = live.get(command_id)
    assert command is not None and command["state"] == State.DONE
    assert command["response"] == {"text": "ECHO loop"}
    # The claim held the whole decision: no second read of the state on the way to the port.
    assert not [line for line in sent if line.startswith("HGET ")], sent


def test_a_claim_near_its_lease_is_checked_again_and_a_lost_one_never_writes(
    live: LiveStore, runtime: DeviceRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    command_id = _queued(live)
    runtime.early_claims.send(command_id)
    deadline = time.monotonic() + 5
    while live.state_of(command_id) != State.DISPATCHED:
        assert time.monotonic() < deadline, "the claim sent ahead never ran"
        time.sleep(0.005)
    # The worker stalls past half the lease, and the reaper ends the command meanwhile.
    assert live.move(command_id, State.INTERRUPTED, expected=(State.DISPATCHED,)).moved
    time.sleep(LEASE_GRACE_S * 0.6)
    with caplog.at_level(logging.INFO, logger="hwq.device"):
        runtime.execute(command_id)
    messages = [record.getMessage() for record in caplog.records]
    assert "claim lost before writing" in messages
    assert "command responded" not in messages
    command = live.get(command_id)
    assert command is not None and command["state"] == State.INTERRUPTED
    assert "response" not in command

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
from tasks.transition_script import TransitionResult
from worker_host.device_runtime import DeviceRuntime

from command_factory import command_values

DEVICE = "dev0"
WORKER = "dev0@host"
# A lease far longer than any stall a busy test machine makes between claim and write.
LONG_LEASE_GRACE_S = 10.0
# Short, so a test can outlast half of it; the runtime re-reads state past that share.
SHORT_LEASE_GRACE_S = 0.4


@pytest.fixture
def make_runtime(
    redis_client: redis.Redis, key_prefix: str
) -> Iterator[Callable[[float], DeviceRuntime]]:
    """Runtimes for DEVICE, each on a store whose claims carry the given lease grace."""
    runtimes: list[DeviceRuntime] = []

    def make(lease_grace_s: float) -> DeviceRuntime:
        live = LiveStore(redis_client, key_prefix, lease_grace_s=lease_grace_s)
        # pyserial's loopback port: the reply to a line is the line itself.
        live.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
        # No analysis is asked for, so nothing is published through this app.
        runtime = DeviceRuntime(live, Celery("device-runtime-test"), DEVICE, WORKER)
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        runtime.close()


def _queued(live: LiveStore) -> str:
    values = command_values(DEVICE, payload="ECHO loop", timeout_s=2.0)
    assert live.create(values, queue_cap=100).moved
    return str(values["id"])


def _claimed(runtime: DeviceRuntime) -> tuple[str, TransitionResult, float]:
    """A command claimed by the runtime's worker: its id, the claim, and when it was sent."""
    command_id = _queued(runtime.live)
    claimed_at = time.monotonic()
    claim = runtime.live.claim(command_id, WORKER)
    assert claim.moved and claim.state == State.DISPATCHED
    return command_id, claim, claimed_at


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
    make_runtime: Callable[[float], DeviceRuntime],
) -> None:
    runtime = make_runtime(LONG_LEASE_GRACE_S)
    warm_up = _queued(runtime.live)
    runtime.execute(warm_up)  # opens the port, reads the device's settings
    assert (runtime.live.get(warm_up) or {}).get("state") == State.DONE
    command_id, claim, claimed_at = _claimed(runtime)
    # A busy machine may get to the port some milliseconds after the claim.
    time.sleep(0.05)
    sent = _commands_from_clients(
        runtime.live.redis, lambda: runtime.run_claimed(command_id, claim, claimed_at)
    )
    command = runtime.live.get(command_id)
    assert command is not None and command["state"] == State.DONE
    assert command["response"] == {"text": "ECHO loop"}
    # The claim held the whole decision: no second read of the state on the way to the port.
    assert not [line for line in sent if line.startswith("HGET ")], sent


def test_a_claim_near_its_lease_is_checked_again_and_a_lost_one_never_writes(
    make_runtime: Callable[[float], DeviceRuntime], caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(SHORT_LEASE_GRACE_S)
    command_id, claim, claimed_at = _claimed(runtime)
    # The worker stalls past half the lease, and the reaper ends the command meanwhile.
    assert runtime.live.move(command_id, State.INTERRUPTED, expected=(State.DISPATCHED,)).moved
    time.sleep(SHORT_LEASE_GRACE_S * 0.6)
    with caplog.at_level(logging.INFO, logger="hwq.device"):
        runtime.run_claimed(command_id, claim, claimed_at)
    messages = [record.getMessage() for record in caplog.records]
    assert "claim lost before writing" in messages
    assert "command responded" not in messages
    command = runtime.live.get(command_id)
    assert command is not None and command["state"] == State.INTERRUPTED
    assert "response" not in command

"""The lifecycle's compare-and-set transitions on a real Redis."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from tasks.command_record import utc_now_iso
from tasks.lifecycle import DeviceState, State
from tasks.live_store import LiveStore

from command_factory import command_values


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    return LiveStore(redis_client, key_prefix)


def new_command(live: LiveStore, device: str = "dev0", **extra: object) -> str:
    values = command_values(device, **extra)
    live.put_device_config(device, {"name": device, "address": "loop://"})
    assert live.create(values, queue_cap=100).moved
    return str(values["id"])


def test_a_command_walks_the_happy_path_and_logs_every_step(live: LiveStore) -> None:
    command_id = new_command(live)
    assert live.claim(command_id, "dev0@host").state == State.DISPATCHED
    result = live.move(
        command_id, State.RESPONDED, State.DONE, expected=(State.DISPATCHED,),
        fields={"response": {"text": "HWQ,SIM"}},
    )  # fmt: skip
    assert result.moved and result.state == State.DONE
    values = live.get(command_id)
    assert values is not None
    assert values["response"] == {"text": "HWQ,SIM"}
    assert values["attempts"] == 1
    assert values["dispatched_at"] and values["responded_at"] and values["finished_at"]
    assert [e["state"] for e in live.events(command_id)] == [
        "queued", "dispatched", "responded", "done",
    ]  # fmt: skip


def test_edges_outside_the_lifecycle_are_refused(live: LiveStore) -> None:
    command_id = new_command(live)
    assert not live.move(command_id, State.DONE).moved
    assert not live.move(command_id, State.RESPONDED).moved
    assert live.state_of(command_id) == State.QUEUED


def test_a_terminal_state_never_changes(live: LiveStore) -> None:
    command_id = new_command(live)
    assert live.move(command_id, State.CANCELLED).moved
    for target in State:
        assert not live.move(command_id, target).moved
    assert not live.claim(command_id, "dev0@host").moved
    assert live.state_of(command_id) == State.CANCELLED


def test_only_one_of_many_concurrent_deliveries_wins_the_claim(live: LiveStore) -> None:
    command_id = new_command(live)
    winners: list[bool] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        winners.append(live.claim(command_id, "dev0@host").moved)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert winners.count(True) == 1


def test_a_claim_after_the_deadline_expires_the_command(live: LiveStore) -> None:
    command_id = new_command(live, expires_s=0.01)
    import time

    time.sleep(0.05)
    result = live.claim(command_id, "dev0@host")
    assert result.state == State.EXPIRED
    assert live.state_of(command_id) == State.EXPIRED


def test_device_state_follows_its_commands(live: LiveStore) -> None:
    assert live.device_status("dev1")["state"] == DeviceState.REST
    first = new_command(live, device="dev1", analysis={"analyzer": "manual", "value": None})
    second = new_command(live, device="dev1")
    status = live.device_status("dev1")
    assert status["state"] == DeviceState.REQUESTED and status["queue_depth"] == 2
    live.claim(first, "w")
    assert live.device_status("dev1")["state"] == DeviceState.COLLECTED
    live.move(first, State.RESPONDED)
    live.move(second, State.CANCELLED)
    assert live.device_status("dev1")["state"] == DeviceState.RESPONDED
    live.move(first, State.DONE)
    assert live.device_status("dev1") | {"last_seen": None} == {
        "state": 0, "queue_depth": 0, "presence": "offline", "error": None, "online": False,
        "last_seen": None,
    }  # fmt: skip


def test_the_queue_cap_refuses_a_command_atomically(live: LiveStore) -> None:
    for _ in range(3):
        new_command(live, device="dev2")
    values = {"id": str(uuid.uuid4()), "device": "dev2", "created_at": utc_now_iso()}
    result = live.create(values, queue_cap=3)
    assert result.queue_full and not result.moved
    assert live.get(values["id"]) is None


@pytest.mark.parametrize("expect_wake", [False, True])
def test_wait_returns_as_soon_as_the_command_settles_blocking_first_or_not(
    live: LiveStore, expect_wake: bool
) -> None:
    import time

    from tasks.lifecycle import is_settled_for_wait

    command_id = new_command(live)
    canceller = threading.Timer(0.3, lambda: live.move(command_id, State.CANCELLED))
    canceller.start()
    started = time.monotonic()
    values = live.wait(command_id, 10, is_settled_for_wait, expect_wake=expect_wake)
    # The wake-up lands while the canceller still reads the script's reply;
    # let it finish before the fixture closes the connection under it.
    canceller.join()
    assert values is not None and values["state"] == State.CANCELLED
    assert 0.25 < time.monotonic() - started < 5


def test_a_wait_blocking_first_on_a_settled_command_returns_at_once(live: LiveStore) -> None:
    import time

    from tasks.lifecycle import is_settled_for_wait

    command_id = new_command(live)
    assert live.move(command_id, State.CANCELLED).moved
    started = time.monotonic()
    values = live.wait(command_id, 10, is_settled_for_wait, expect_wake=True)
    assert values is not None and values["state"] == State.CANCELLED
    assert time.monotonic() - started < 1


def test_a_wait_of_zero_seconds_never_blocks(live: LiveStore) -> None:
    import time

    from tasks.lifecycle import is_settled_for_wait

    command_id = new_command(live)
    started = time.monotonic()
    # XREAD's BLOCK 0 would mean forever: a zero wait must not turn into one.
    values = live.wait(command_id, 0, is_settled_for_wait, expect_wake=True)
    assert values is not None and values["state"] == State.QUEUED
    assert time.monotonic() - started < 1


def test_a_command_for_an_unregistered_device_is_not_stored(live: LiveStore) -> None:
    values = {"id": str(uuid.uuid4()), "device": "ghost", "created_at": utc_now_iso()}
    result = live.create(values, queue_cap=10, enqueue=("ghost-queue", "message"))
    assert result.unknown_device and not result.moved
    assert live.get(values["id"]) is None
    assert live.redis.llen("ghost-queue") == 0

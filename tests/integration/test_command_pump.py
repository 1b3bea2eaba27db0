"""The device worker's command thread on a real Redis, with pyserial's loop:// as the device."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from config import Settings
from tasks.celery_app import create_celery
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from worker_host.command_pump import CommandPump
from worker_host.device_runtime import DeviceRuntime
from worker_host.queue_pop import IDLE_POP_S
from worker_host.task_events import EVENT_BATCH_S

from command_factory import submitted

DEVICE = "dev0"
WORKER = "dev0@host"
COMMANDS = 5
TASK_EVENTS = ("task-received", "task-started", "task-succeeded")
# Long enough that its events can be seen before it ends, given EVENT_BATCH_S.
LONG_COMMAND_S = 2.0


@pytest.fixture
def app(redis_url: str, key_prefix: str) -> Celery:
    return create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    store = LiveStore(redis_client, key_prefix)
    # pyserial's loopback port: the reply to a line is the line itself.
    store.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    return store


@pytest.fixture
def pump(app: Celery, live: LiveStore) -> Iterator[CommandPump]:
    runtime = DeviceRuntime(live, app, DEVICE, WORKER)
    pump = CommandPump(app, runtime, WORKER)
    yield pump
    pump.stop()
    runtime.close()


def _submit(live: LiveStore, payload: str, **extra: Any) -> str:
    return submitted(live, DEVICE, payload, **extra)


def _wait_settled(live: LiveStore, command_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    unsettled = (State.QUEUED, State.DISPATCHED)
    while (command := live.get(command_id)) is None or command["state"] in unsettled:
        assert time.monotonic() < deadline, f"{command_id} did not settle: {command}"
        time.sleep(0.01)
    return command


def _publishes(client: redis.Redis) -> int:
    """How many PUBLISH commands this Redis has run so far."""
    return int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))


class EventLog:
    """Task events a Celery event receiver (as Flower runs one) got from the broker."""

    def __init__(self, app: Celery, client: redis.Redis) -> None:
        self.events: list[dict[str, Any]] = []
        self._receiver: Any = None
        subscribed_before = client.pubsub_numpat()
        self._thread = threading.Thread(target=self._capture, args=(app,), daemon=True)
        self._thread.start()
        # kombu subscribes to the event exchange's pattern once the receiver first polls.
        deadline = time.monotonic() + 10
        while client.pubsub_numpat() <= subscribed_before:
            assert time.monotonic() < deadline, "the event receiver did not subscribe"
            time.sleep(0.01)

    def _capture(self, app: Celery) -> None:
        with app.connection_for_read() as connection:
            self._receiver = app.events.Receiver(connection, handlers={"*": self.events.append})
            for _ in self._receiver.consume(safety_interval=0.2, wakeup=False):
                pass

    def of(self, command_id: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("uuid") == command_id]

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(5)


def test_commands_run_in_order_and_flower_gets_their_events(
    app: Celery, live: LiveStore, pump: CommandPump
) -> None:
    events = EventLog(app, live.redis)
    try:
        command_ids = [_submit(live, f"ECHO {i}") for i in range(COMMANDS)]
        publishes_before = _publishes(live.redis)
        pump.start()
        commands = [_wait_settled(live, command_id) for command_id in command_ids]
        assert [c["state"] for c in commands] == [State.DONE] * COMMANDS
        replies = [{"text": f"ECHO {i}"} for i in range(COMMANDS)]
        assert [c["response"] for c in commands] == replies
        # One device, one command at a time, in the order they were queued.
        for before, after in zip(commands, commands[1:], strict=False):
            assert before["finished_at"] <= after["dispatched_at"]
        deadline = time.monotonic() + EVENT_BATCH_S + 5
        while any(len(events.of(c)) < len(TASK_EVENTS) for c in command_ids):
            assert time.monotonic() < deadline, f"events seen: {events.events}"
            time.sleep(0.05)
        publishes = _publishes(live.redis) - publishes_before
    finally:
        events.close()
    for command_id in command_ids:
        seen = events.of(command_id)
        assert tuple(event["type"] for event in seen) == TASK_EVENTS
        assert {event["hostname"] for event in seen} == {WORKER}
        assert seen[0]["name"] == "hwq.execute"
    # Events of several commands travel together, not one publish each.
    assert publishes < COMMANDS * len(TASK_EVENTS)


def test_a_long_command_shows_as_started_while_it_runs(
    app: Celery, live: LiveStore, pump: CommandPump
) -> None:
    events = EventLog(app, live.redis)
    try:
        # One byte out, and loop:// echoes one back: the reply never reaches its 100.
        command_id = _submit(live, "QQ==", kind="raw", read={"bytes": 100},
                             timeout_s=LONG_COMMAND_S)  # fmt: skip
        pump.start()
        deadline = time.monotonic() + LONG_COMMAND_S * 0.8
        while [e["type"] for e in events.of(command_id)] != list(TASK_EVENTS[:2]):
            assert time.monotonic() < deadline, f"events seen: {events.of(command_id)}"
            time.sleep(0.02)
        assert live.state_of(command_id) == State.DISPATCHED
        assert _wait_settled(live, command_id)["state"] == State.TIMED_OUT
    finally:
        events.close()


def test_the_thread_outlives_a_failure_of_its_own(
    live: LiveStore,
    pump: CommandPump,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_next = pump.pop.next
    failures = []

    def fail_once(timeout_s: float) -> bytes | None:
        if not failures:
            failures.append(timeout_s)
            raise RuntimeError("a bug in the pop")
        return real_next(timeout_s)

    monkeypatch.setattr(pump.pop, "next", fail_once)
    with caplog.at_level(logging.ERROR, logger="hwq.device"):
        pump.start()
        command = _wait_settled(live, _submit(live, "ECHO still here"))
    assert command["response"] == {"text": "ECHO still here"}
    assert failures, "the failure was never injected"
    assert "command thread failed; it starts again" in [r.getMessage() for r in caplog.records]


def test_a_message_that_is_no_command_is_dropped_and_the_next_one_runs(
    live: LiveStore, pump: CommandPump, caplog: pytest.LogCaptureFixture
) -> None:
    live.redis.lpush(live.broker_queue_key(DEVICE), b'{"headers": {"task": "other"}}')
    command_id = _submit(live, "ECHO after")
    with caplog.at_level(logging.WARNING, logger="hwq.device"):
        pump.start()
        command = _wait_settled(live, command_id)
    assert command["response"] == {"text": "ECHO after"}
    assert "message dropped: not a command" in [r.getMessage() for r in caplog.records]


def test_stopping_an_idle_pump_is_prompt_and_leaves_the_queue_alone(
    live: LiveStore, pump: CommandPump
) -> None:
    pump.start()
    time.sleep(0.3)  # the thread is in its blocking pop
    started = time.monotonic()
    pump.stop()
    # Without the unblock, the stop would wait out the idle pop: IDLE_POP_S.
    assert time.monotonic() - started < IDLE_POP_S / 4
    command_id = _submit(live, "ECHO later")
    time.sleep(0.3)
    assert live.state_of(command_id) == State.QUEUED
    assert live.redis.llen(live.broker_queue_key(DEVICE)) == 1


def test_a_pump_whose_connection_drops_connects_again_and_runs_on(
    live: LiveStore, pump: CommandPump, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hwq.device"):
        pump.start()
        time.sleep(0.3)  # the thread is in its blocking pop
        pop_id = pump.pop.connection_id
        assert pop_id is not None
        assert live.redis.client_kill_filter(_id=str(pop_id)) == 1
        command = _wait_settled(live, _submit(live, "ECHO again"))
    assert command["response"] == {"text": "ECHO again"}
    assert "device queue unreachable" in [r.getMessage() for r in caplog.records]

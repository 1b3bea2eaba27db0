"""Blocking pops on a real Redis: put back, outwaiting the socket timeout, interrupted."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from tasks.live_store import LiveStore
from worker_host.queue_pop import IDLE_POP_S, QueuePop

from command_factory import submitted

DEVICE = "dev0"
# A client's socket timeout, short enough for a test to outwait.
SHORT_SOCKET_TIMEOUT_S = 0.3


@pytest.fixture
def live(redis_client: redis.Redis, key_prefix: str) -> LiveStore:
    store = LiveStore(redis_client, key_prefix)
    store.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    return store


def _submit(live: LiveStore, payload: str, **extra: Any) -> str:
    return submitted(live, DEVICE, payload, **extra)


def test_a_message_put_back_is_the_next_one_popped(live: LiveStore) -> None:
    pop = QueuePop(live.redis, live.broker_queue_key(DEVICE))
    try:
        first, second = _submit(live, "ECHO 1"), _submit(live, "ECHO 2")
        message = pop.next(1.0)
        assert message is not None and first.encode() in message
        pop.put_back(message)
        assert pop.next(1.0) == message
        again = pop.next(1.0)
        assert again is not None and second.encode() in again
        assert pop.next(0.05) is None
    finally:
        pop.close()


def test_a_pop_outwaits_its_clients_socket_timeout(redis_url: str, key_prefix: str) -> None:
    """An idle pop lasts longer than redis-py's socket timeout, and must not end in an error."""
    client = redis.Redis.from_url(redis_url, socket_timeout=SHORT_SOCKET_TIMEOUT_S)
    pop = QueuePop(client, f"{key_prefix}:idle", longest_pop_s=SHORT_SOCKET_TIMEOUT_S * 3)
    try:
        started = time.monotonic()
        assert pop.next(SHORT_SOCKET_TIMEOUT_S * 2) is None
        assert time.monotonic() - started >= SHORT_SOCKET_TIMEOUT_S * 2
    finally:
        pop.close()
        client.close()


def test_an_interrupt_ends_a_waiting_pop_at_once(live: LiveStore) -> None:
    pop = QueuePop(live.redis, live.broker_queue_key(DEVICE))
    outcome: list[bytes | None] = []
    thread = threading.Thread(target=lambda: outcome.append(pop.next(IDLE_POP_S)))
    try:
        thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        pop.interrupt()
        thread.join(IDLE_POP_S)
        assert time.monotonic() - started < IDLE_POP_S / 4
        assert outcome == [None]
    finally:
        pop.close()

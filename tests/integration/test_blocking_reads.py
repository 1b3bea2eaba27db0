"""Blocking Redis reads against the socket timeout: waits outlast it, a hung Redis is caught."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from config import Settings
from hwq.embedded_redis import EmbeddedRedis
from tasks.connections import REDIS_SOCKET_TIMEOUT_S, async_redis_client, redis_client
from tasks.lifecycle import State, is_settled_for_wait
from tasks.live_store import LiveStore

from command_factory import command_values

# A client's socket timeout, short enough for a test to outwait several times over.
SHORT_SOCKET_TIMEOUT_S = 0.4
DEVICE = "dev0"


def _queued(live: LiveStore) -> str:
    values = command_values(DEVICE)
    live.put_device_config(DEVICE, {"name": DEVICE, "address": "loop://"})
    assert live.create(values, queue_cap=100).moved
    return str(values["id"])


@pytest.fixture
def short_timeout_live(redis_url: str, key_prefix: str) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(redis_url, socket_timeout=SHORT_SOCKET_TIMEOUT_S)
    yield LiveStore(client, key_prefix)
    client.close()


@pytest.mark.parametrize("expect_wake", [False, True])
def test_a_wait_outlasts_its_clients_socket_timeout(
    short_timeout_live: LiveStore, expect_wake: bool
) -> None:
    """A long-poll longer than the socket timeout ends with the command, not a timeout error."""
    live = short_timeout_live
    command_id = _queued(live)
    settle_after_s = SHORT_SOCKET_TIMEOUT_S * 4
    canceller = threading.Timer(settle_after_s, lambda: live.move(command_id, State.CANCELLED))
    canceller.start()
    started = time.monotonic()
    try:
        values = live.wait(command_id, SHORT_SOCKET_TIMEOUT_S * 10, is_settled_for_wait,
                           expect_wake=expect_wake)  # fmt: skip
    finally:
        canceller.join()
    assert values is not None and values["state"] == State.CANCELLED
    assert settle_after_s - 0.05 < time.monotonic() - started < SHORT_SOCKET_TIMEOUT_S * 10


def test_a_wait_that_times_out_past_the_socket_timeout_returns_the_command(
    short_timeout_live: LiveStore,
) -> None:
    live = short_timeout_live
    command_id = _queued(live)
    started = time.monotonic()
    values = live.wait(command_id, SHORT_SOCKET_TIMEOUT_S * 3, is_settled_for_wait)
    assert values is not None and values["state"] == State.QUEUED
    assert time.monotonic() - started >= SHORT_SOCKET_TIMEOUT_S * 3


def test_an_asyncio_wait_outlasts_its_clients_socket_timeout(
    redis_url: str, key_prefix: str
) -> None:
    live = LiveStore(redis.Redis.from_url(redis_url), key_prefix)
    command_id = _queued(live)

    async def wait() -> dict[str, object] | None:
        client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=SHORT_SOCKET_TIMEOUT_S)
        try:
            rounds = live.command_wait(command_id, SHORT_SOCKET_TIMEOUT_S * 10,
                                       is_settled_for_wait, client=client)  # fmt: skip
            return await rounds.run_async(client)
        finally:
            await client.aclose()

    canceller = threading.Timer(SHORT_SOCKET_TIMEOUT_S * 4,
                                lambda: live.move(command_id, State.CANCELLED))  # fmt: skip
    canceller.start()
    try:
        values = asyncio.run(wait())
    finally:
        canceller.join()
        live.redis.close()
    assert values is not None and values["state"] == State.CANCELLED


def test_every_client_sets_a_socket_timeout_its_blocks_fit_in(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url)
    blocking = redis_client(settings, max_connections=2)
    asynchronous = async_redis_client(settings, max_connections=2)
    for client in (blocking, asynchronous):
        assert client.connection_pool.connection_kwargs["socket_timeout"] == REDIS_SOCKET_TIMEOUT_S
        live = LiveStore(blocking, "unused")
        rounds = live.command_wait("c1", 60, is_settled_for_wait, client=client)
        assert rounds.longest_block_s < REDIS_SOCKET_TIMEOUT_S
    blocking.close()


def test_a_wait_on_a_hung_redis_fails_within_the_socket_timeout(tmp_path: Path) -> None:
    """Chunked blocks must not hide a dead Redis: the wait errs instead of hanging."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    try:
        url = server.start()
    except Exception as e:  # no binary
        pytest.skip(f"cannot start redis-server: {e}")
    assert server.process is not None
    client = redis.Redis.from_url(url, socket_timeout=SHORT_SOCKET_TIMEOUT_S)
    live = LiveStore(client, "hung")
    command_id = _queued(live)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            live.wait(command_id, 30, is_settled_for_wait)
        assert time.monotonic() - started < SHORT_SOCKET_TIMEOUT_S * 5
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        client.close()
        server.stop()


def test_the_asyncio_client_survives_a_redis_restart(tmp_path: Path) -> None:
    """Defect: after Redis restarted, the front door's first read on a pooled connection failed
    ("Connection closed by server") and a request got 503, though Redis was back."""
    first = EmbeddedRedis(tmp_path / "redis", persist=False)
    again = EmbeddedRedis(tmp_path / "redis", persist=False, port=first.port)
    settings = Settings(home=tmp_path / "home", redis_url=first.start())

    async def read_across_a_restart() -> object:
        client = async_redis_client(settings, max_connections=4)
        try:
            await client.set("k", "before")
            first.stop()
            again.start()
            return await client.get("k")
        finally:
            await client.aclose()

    try:
        # A fresh Redis holds nothing: the read answers None instead of failing.
        assert asyncio.run(read_across_a_restart()) is None
    finally:
        first.stop()
        again.stop()

"""hwq's broker transport: kombu's Redis transport with one client per channel, still delivering."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from kombu import Queue

from config import Settings
from hwq.embedded_redis import find_redis_server
from tasks.broker_transport import Transport
from tasks.celery_app import create_celery

# The idle poll of the consumer whose close is timed: long, so a close that waits it out shows.
POLL_S = 30


def test_a_channel_reuses_its_client_and_messages_still_flow(
    redis_url: str, key_prefix: str
) -> None:
    app = create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
        channel = connection.default_channel
        assert channel._create_client() is channel._create_client()
        queue = connection.SimpleQueue(f"{key_prefix}-transport-check")
        for i in range(3):
            queue.put({"n": i})
        received = []
        for _ in range(3):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        queue.close()
    assert received == [0, 1, 2]


def test_a_new_connection_pool_gets_a_new_client(redis_url: str, key_prefix: str) -> None:
    app = create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        before = channel._create_client()
        channel._disconnect_pools()  # what kombu does when the connection is lost
        after = channel._create_client()
        assert after is not before
        assert after.connection_pool is channel.pool
        assert after.ping()


def test_closing_a_consumer_ends_its_waiting_pop_at_once(redis_url: str, key_prefix: str) -> None:
    """A stopping device worker must not sit out its 10 s idle poll: Ctrl-C stops it promptly."""
    app = create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "polling_interval": POLL_S,
    }
    connection = app.connection_for_read()
    consumer = connection.Consumer(Queue(f"{key_prefix}-idle"), callbacks=[lambda *_: None])
    consumer.consume()
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=0.5)
    assert connection.default_channel._in_poll, "no blocking pop is waiting on the broker"
    started = time.monotonic()
    connection.close()
    # Without the unblock, close waits for the pop's own timeout: POLL_S.
    assert time.monotonic() - started < POLL_S / 2


def test_a_redis_on_a_unix_socket_carries_celery_messages(tmp_path: Path) -> None:
    """HWQ_REDIS_URL=unix:///…?db=N works for Celery, not only for hwq's own Redis clients."""
    socket_path = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(socket_path), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert time.monotonic() < deadline, "redis-server did not open its socket"
            time.sleep(0.05)
        url = f"unix://{socket_path}?db=2"
        app = create_celery(Settings(redis_url=url, key_prefix="unix"))
        with app.connection_for_write() as connection:
            queue = connection.SimpleQueue("unix-check")
            queue.put({"n": 1})
            message = queue.get(timeout=5)
            message.ack()
            queue.close()
        assert message.payload == {"n": 1}
        assert redis.Redis.from_url(url).exists("unix:q:_kombu.binding.unix-check")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_idle_consumer_has_no_timer_due_every_second(redis_url: str, key_prefix: str) -> None:
    """kombu's own transport wakes every idle worker each second to look at binding tables."""
    from kombu.asynchronous import Hub

    app = create_celery(Settings(redis_url=redis_url, key_prefix=key_prefix))
    hub = Hub()
    with app.connection_for_read() as connection:
        connection.default_channel  # noqa: B018 (opening the channel registers its poller)
        started = time.monotonic()
        connection.transport.register_with_event_loop(connection.connection, hub)
        due = [item.eta for item in hub.timer.queue if not item.entry.canceled]
        soonest = min(due) - started
        hub.timer.clear()
        hub.close()
    assert soonest >= 5, f"an idle consumer would wake {soonest:.1f} s from now"

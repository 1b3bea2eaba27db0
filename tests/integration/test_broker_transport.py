"""hwq's broker transport: kombu's Redis transport with one client per channel, still delivering."""

from __future__ import annotations

import socket
import time

import pytest
from kombu import Queue

from config import Settings
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

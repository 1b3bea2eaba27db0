"""hwq's broker transport: kombu's Redis transport with one client per channel, still delivering."""

from __future__ import annotations

from config import Settings
from tasks.broker_transport import Transport
from tasks.celery_app import create_celery


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

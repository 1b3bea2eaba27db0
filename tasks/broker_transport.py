"""kombu's Redis transport, reusing one Redis client per channel instead of one per call.

kombu builds a new `redis.Redis` object for every publish, acknowledgement and task event
(`Channel.conn_or_acquire`). Building one copies redis-py's table of ~200 response callbacks,
which made it a fifth of a device worker's CPU per command. A `redis.Redis` is safe to share
between threads (each call checks a connection out of the pool), so each channel keeps one
for as long as its connection pool lives.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

# What `broker_transport` names so Celery and kombu load this module's transport.
TRANSPORT_PATH = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    """A Redis channel whose synchronous client is made once per connection pool."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        # The asynchronous client owns the BRPOP/pub-sub sockets the event loop polls: kombu
        # manages those itself, so only the synchronous one is shared.
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        client = self._shared_client
        # A reconnect replaces the pool; a client of the old pool would keep dead sockets.
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()  # type: ignore[misc]
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the shared-client channel."""

    Channel = Channel

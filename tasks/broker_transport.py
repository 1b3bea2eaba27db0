"""kombu's Redis transport, with a shared client per channel, a prompt close and a quiet idle.

kombu builds a new `redis.Redis` object for every publish, acknowledgement and task event
(`Channel.conn_or_acquire`). Building one copies redis-py's table of ~200 response callbacks,
which made it a fifth of a device worker's CPU per command. A `redis.Redis` is safe to share
between threads (each call checks a connection out of the pool), so each channel keeps one
for as long as its connection pool lives.

Closing a channel reads the reply of the blocking pop still waiting on the broker, which
takes up to the poll interval: 10 s for an idle device worker, for every worker stopped.
The channel notes which broker connection its pop runs on and, when it closes, has Redis
end that pop at once (CLIENT UNBLOCK: an empty reply, as if it had timed out; a message
popped just before is delivered as usual).
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
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

    def _brpop_start(self, timeout: Any = None) -> Any:
        connection = self.client.connection
        if connection is not None:
            blocking_client_id(connection)
        return super()._brpop_start(timeout)  # type: ignore[misc]

    def close(self) -> None:
        connection = self._in_poll  # type: ignore[attr-defined]
        noted = getattr(connection, _CLIENT_ID, None) if connection else None
        if noted is not None and noted[0] is connection._sock and noted[1] is not None:
            # If the broker is gone, the pop's reply is not coming either.
            with contextlib.suppress(Exception):
                self._create_client().client_unblock(noted[1])
        super().close()


# Where a broker connection keeps (its socket, its Redis client id).
_CLIENT_ID = "hwq_client_id"


def blocking_client_id(connection: Any) -> int | None:
    """Redis's id of this connection, asked once per socket, for CLIENT UNBLOCK to end a pop.

    None from a Redis before 5.0, or under an ACL without CLIENT: a pop then runs its course.
    """
    # (the socket it was asked on, the id), as noted below.
    noted: tuple[object, int | None] | None = getattr(connection, _CLIENT_ID, None)
    if connection._sock is not None and noted is not None and noted[0] is connection._sock:
        return noted[1]
    connection.send_command("CLIENT", "ID")  # connects first if it is not connected
    try:
        client_id: int | None = int(connection.read_response())
    except redis.ResponseError:
        client_id = None
    setattr(connection, _CLIENT_ID, (connection._sock, client_id))
    return client_id


# kombu checks every second whether the binding tables of expiring queues need refreshing,
# which wakes every idle worker's event loop once a second. Those tables live at least an hour
# (kombu's MIN_BINDING_TTL) and are swept once a minute, so a check this often keeps them
# alive as surely and lets an idle device worker sleep.
BINDING_CHECK_S = 30.0


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the shared-client channel and a calmer binding check."""

    Channel = Channel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        # The stubs predate kombu's binding expiry; the poller is made before this is called.
        cycle: Any = self.cycle
        every_second = getattr(cycle, "_binding_expiry_tref", None)
        if every_second is not None:
            every_second.cancel()
            # kombu cancels this attribute's timer when it registers again after a reconnect.
            cycle._binding_expiry_tref = loop.call_repeatedly(
                BINDING_CHECK_S, cycle.maybe_refresh_binding_expiry
            )

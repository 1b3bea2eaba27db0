"""Blocking pops from one Redis list, on a connection of their own that another thread can
interrupt: how a device worker's command thread waits for its next message."""

from __future__ import annotations

from typing import Any

import redis

from tasks.broker_transport import blocking_client_id

# An idle device's blocking pop is renewed this often; a message still arrives the moment it
# is pushed, so only idle wake-ups get rarer: fifty idle workers should cost next to nothing.
IDLE_POP_S = 10.0
# The shortest blocking pop: Redis reads a zero timeout as "wait forever".
MIN_POP_S = 0.01
# How long past a pop's own timeout its reply may take before the connection counts as dead.
POP_REPLY_GRACE_S = 5.0


class QueuePop:
    """Blocking pops from one Redis list on a connection of their own, endable from outside.

    A pop may wait up to `longest_pop_s`: the connection's socket timeout (redis-py's default
    is a few seconds) is set past that, or every idle pop would end in an error.
    """

    def __init__(self, client: redis.Redis, key: str, longest_pop_s: float = IDLE_POP_S) -> None:
        self.client = client
        self.key = key
        self.longest_pop_s = longest_pop_s
        pool = client.connection_pool
        self._connection: Any = pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": longest_pop_s + POP_REPLY_GRACE_S}
        )
        self._client_id: int | None = None

    def next(self, timeout_s: float) -> bytes | None:
        """The next message, or None after `timeout_s` or once `interrupt` is called."""
        timeout_s = min(max(timeout_s, MIN_POP_S), self.longest_pop_s)
        try:
            self._client_id = blocking_client_id(self._connection)
            self._connection.send_command("BRPOP", self.key, f"{timeout_s:.3f}")
            reply = self._connection.read_response()
        except redis.RedisError:
            self.close()
            raise
        return None if reply is None else bytes(reply[1])

    @property
    def connection_id(self) -> int | None:
        """Redis's id of the pop's connection, once it has connected."""
        return self._client_id

    def interrupt(self) -> None:
        """End a pop that is waiting now, as if it had timed out (CLIENT UNBLOCK)."""
        if self._client_id is not None:
            self.client.client_unblock(self._client_id)

    def put_back(self, message: bytes) -> None:
        """Return a popped message to the head of the queue, where the pop took it from."""
        self.client.rpush(self.key, message)

    def close(self) -> None:
        """Drop the connection; the next pop connects again."""
        self._client_id = None
        self._connection.disconnect()

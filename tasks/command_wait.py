"""One long-poll on a command's wake stream, as rounds of reads free of I/O.

The rounds are the same whether a thread runs them on a blocking Redis client
(`LiveStore.wait`) or a coroutine on `redis.asyncio` (the API's front door), so both wait
alike. Every blocking read is cut to a share of its connection's socket timeout: a block
longer than the socket timeout would end in a timeout error, not in an empty reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tasks.command_record import command_from_redis
from tasks.command_values import CommandValues
from tasks.redis_replies import Fields, text_fields

# The longest single block when the connection has no socket timeout at all.
LONGEST_BLOCK_S = 5.0
# A block may use at most this share of its connection's socket timeout; the rest is the time
# the reply may take to come back before the connection counts as dead.
BLOCK_SHARE_OF_SOCKET_TIMEOUT = 0.5


def longest_block_s(client: Any) -> float:
    """How long one blocking read on `client` may block: well inside its socket timeout."""
    socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    if not socket_timeout:
        return LONGEST_BLOCK_S
    return min(LONGEST_BLOCK_S, float(socket_timeout) * BLOCK_SHARE_OF_SOCKET_TIMEOUT)


def decode_hash(raw: Fields) -> CommandValues | None:
    """A command hash as its values, or None for an empty (absent) one."""
    if not raw:
        return None
    return command_from_redis(text_fields(raw))


class CommandWait:
    """The reads of one long-poll: queue a round on a pipeline, then take its replies.

    `expect_wake`: the command surely has its live state (it was just accepted), so the first
    round may block on its wake stream at once, from the stream's start, instead of first
    reading the state: one round trip fewer for a command that settles meanwhile. A command
    with no live state would block for the whole timeout this way.
    """

    def __init__(
        self,
        wake_key: str,
        command_key: str,
        timeout_s: float,
        settled: Callable[[CommandValues], bool],
        *,
        longest_block_s: float,
        expect_wake: bool = False,
    ) -> None:
        self.wake_key = wake_key
        self.command_key = command_key
        self.settled = settled
        self.longest_block_s = longest_block_s
        self.deadline = time.monotonic() + timeout_s
        self.last_id = b"0-0"
        self.block_ms = self._block_ms(timeout_s) if expect_wake and timeout_s > 0 else None
        # The command's values after the last round; None while Redis holds none.
        self.values: CommandValues | None = None

    def _block_ms(self, remaining_s: float) -> int:
        return int(min(remaining_s, self.longest_block_s) * 1000) + 1

    def queue_round(self, pipe: Any) -> None:
        """Put one round's reads on a pipeline (blocking or asyncio: both queue alike)."""
        # Read the wake stream's tail before the state, so an entry landing in between is
        # returned by the next XREAD at once instead of being missed. After the first round,
        # the blocking XREAD leads the same pipeline: Redis holds the reads behind it until
        # it returns, so a wake-up and the state it announces cost one round trip.
        if self.block_ms is not None:
            pipe.xread({self.wake_key: self.last_id}, block=self.block_ms)
        pipe.xrevrange(self.wake_key, count=1)
        pipe.hgetall(self.command_key)

    def take_round(self, replies: list[Any]) -> bool:
        """Take a round's replies; True once the wait is over (settled, gone or timed out)."""
        *_, tail, raw = replies
        self.last_id = tail[0][0] if tail else self.last_id
        self.values = decode_hash(raw)
        if self.values is None or self.settled(self.values):
            return True
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return True
        self.block_ms = self._block_ms(remaining)
        return False

    def run(self, client: Any) -> CommandValues | None:
        """Wait on a blocking client, holding the calling thread; the command's last values."""
        while True:
            pipe = client.pipeline(transaction=False)
            self.queue_round(pipe)
            if self.take_round(pipe.execute()):
                return self.values

    async def run_async(self, client: Any) -> CommandValues | None:
        """Wait on a redis.asyncio client, holding no thread; the command's last values."""
        while True:
            pipe = client.pipeline(transaction=False)
            self.queue_round(pipe)
            if self.take_round(await pipe.execute()):
                return self.values

"""Connections to Redis and the results database, made from settings."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff

from config import Settings
from tasks.errors import OutcomeUnknown

# The API holds one connection per open long-poll; the pool must cover its threads.
DEFAULT_REDIS_POOL = 256
# A request that cannot get a Redis connection this fast reports 503 rather than hanging.
REDIS_CONNECT_TIMEOUT_S = 2.0
# A reply that takes longer than this means Redis is gone or hung. Blocking reads (long-polls,
# pops, the recorder's stream reads) block for at most half of it per call
# (tasks/command_wait.py), so a long wait is many short blocks, never a timeout error.
REDIS_SOCKET_TIMEOUT_S = 10.0
# A read on the asyncio client whose connection was dropped is tried again this many times,
# pausing at most this long in between.
ASYNC_RETRIES = 2
ASYNC_RETRY_CAP_S = 0.5


def _pool_options(max_connections: int) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": REDIS_CONNECT_TIMEOUT_S,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
        # Set, never left to redis-py: its default changed from none to 5 s between versions.
        "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
        "health_check_interval": 30,
    }


def redis_client(settings: Settings, max_connections: int = DEFAULT_REDIS_POOL) -> redis.Redis:
    """A thread-safe Redis client with a bounded, blocking pool."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.broker_url, **_pool_options(max_connections)
    )
    return redis.Redis(connection_pool=pool)


def async_redis_client(settings: Settings, max_connections: int) -> redis.asyncio.Redis:
    """An asyncio Redis client with a bounded pool, for waits held without a thread."""
    pool: redis.asyncio.BlockingConnectionPool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.broker_url,
        # Unlike the blocking client, redis.asyncio retries nothing by default: a connection
        # left over from before a Redis restart would fail its next read (a 503) instead of
        # being made again. This client only reads (waits, the token generation).
        retry=AsyncRetry(ExponentialBackoff(cap=ASYNC_RETRY_CAP_S, base=0.05), ASYNC_RETRIES),
        **_pool_options(max_connections),
    )
    return redis.asyncio.Redis(connection_pool=pool)


def send_and_read(connection: Any, command: tuple[Any, ...], reply_timeout_s: float) -> Any:
    """One command on `connection`, its reply awaited at most `reply_timeout_s`."""
    try:
        connection.send_command(*command, check_health=False)
        if not connection.can_read(timeout=reply_timeout_s):
            raise OutcomeUnknown(f"Redis did not answer within {reply_timeout_s:g} s")
        return connection.read_response()
    except redis.ResponseError:
        raise  # Redis answered, refusing: the script did not run
    except (redis.RedisError, OSError) as e:
        raise OutcomeUnknown(f"Redis's answer was lost: {e}") from e

"""Connections to Redis and the results database, made from settings."""

from __future__ import annotations

import redis

from config import Settings

# The API holds one connection per open long-poll; the pool must cover its threads.
DEFAULT_REDIS_POOL = 256
# A request that cannot get a Redis connection this fast reports 503 rather than hanging.
REDIS_CONNECT_TIMEOUT_S = 2.0


def redis_client(settings: Settings, max_connections: int = DEFAULT_REDIS_POOL) -> redis.Redis:
    """A thread-safe Redis client with a bounded, blocking pool."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.broker_url,
        max_connections=max_connections,
        timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)

"""How full Redis is and how far the recorder trails: what admission and /health look at."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from tasks.errors import StoreNearlyFull

# New commands are refused once Redis uses this share of its maxmemory: the rest is room for
# what already accepted commands still write (claims, replies, events) and for the recorder.
NEARLY_FULL_SHARE = 0.85
# Or once this many transitions wait for the recorder: each is a row it still has to write,
# and the stream holds nothing else (recorded entries are deleted).
MAX_RECORDER_BACKLOG = 50_000
# The check runs at most this often per process; submissions in between reuse its verdict.
CHECK_EVERY_S = 1.0
# What a refused client is told to wait before trying again.
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class RecorderLag:
    """Transitions not yet in SQL, and the age of the oldest one in seconds (0 when none)."""

    pending: int
    oldest_s: float


def recorder_lag(client: redis.Redis, transitions_key: str) -> RecorderLag:
    """How far the ledger trails the live state, read from the transitions stream."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(transitions_key)
    pipe.xrange(transitions_key, count=1)
    pipe.time()
    pending, oldest, (seconds, micros) = pipe.execute()
    if not oldest:
        return RecorderLag(int(pending), 0.0)
    # A stream id starts with the Redis time, in milliseconds, at which the entry was added.
    added_ms = int(oldest[0][0].split(b"-")[0])
    now_ms = seconds * 1000 + micros // 1000
    return RecorderLag(int(pending), max(0.0, (now_ms - added_ms) / 1000))


class AdmissionGuard:
    """Refuses new commands before Redis is full or the recorder hopelessly behind."""

    def __init__(self, client: redis.Redis, transitions_key: str) -> None:
        self.redis = client
        self.transitions_key = transitions_key
        self._checked_at = -CHECK_EVERY_S
        self._refusal: str | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise `StoreNearlyFull` if new commands should wait; cheap, cached for a second."""
        now = time.monotonic()
        if now - self._checked_at >= CHECK_EVERY_S:
            with self._lock:
                if now - self._checked_at >= CHECK_EVERY_S:
                    self._refusal = self._refusal_now()
                    self._checked_at = now
        if self._refusal is not None:
            raise StoreNearlyFull(self._refusal, RETRY_AFTER_S)

    def _refusal_now(self) -> str | None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.info("memory")
        pipe.xlen(self.transitions_key)
        memory, backlog = pipe.execute()
        used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
        if limit and used >= NEARLY_FULL_SHARE * limit:
            return (
                f"Redis holds {used} of its {limit} bytes; new commands wait until the "
                "recorder has moved finished ones to the ledger"
            )
        if backlog >= MAX_RECORDER_BACKLOG:
            return f"{backlog} transitions wait for the recorder; new commands wait for it"
        return None


@functools.cache
def _version() -> str:
    # Read from the installed metadata once: scanning it was half of what a health check cost.
    try:
        return version("hwq")
    except PackageNotFoundError:
        return "0+unknown"


def health_report(client: redis.Redis, transitions_key: str, engine: Engine) -> dict[str, Any]:
    """Whether Redis and the database answer, and how far the ledger trails Redis."""
    redis_ok = database_ok = True
    lag = None
    try:
        lag = recorder_lag(client, transitions_key)
    except redis.RedisError:
        redis_ok = False
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        database_ok = False
    return {
        "status": "ok" if redis_ok and database_ok else "degraded",
        "redis": "ok" if redis_ok else "down",
        "database": "ok" if database_ok else "down",
        "version": _version(),
        # Transitions not yet in the ledger and the age of the oldest: a lagging recorder
        # delays history, not commands, so it does not make the status degraded.
        "recorder_pending": None if lag is None else lag.pending,
        "recorder_lag_s": None if lag is None else round(lag.oldest_s, 3),
    }

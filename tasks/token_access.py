"""Bearer tokens behind the API: a lookup cached per process that a revocation made on any
process ends at once, and the admin's create, list and revoke."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import redis
from cachetools import TTLCache
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from tasks.auth import Principal
from tasks.db import tokens
from tasks.db.write_lock import write_session, writer_turn
from tasks.errors import NotFound, Unauthorized

log = logging.getLogger("hwq.service")

# A token lookup is cached this long, so a busy client costs one SQL query per minute. Each
# request still reads the revocation generation from Redis, so a revoked token fails at once.
TOKEN_CACHE_TTL_S = 60.0
# At most this many tokens are cached, the least recently used dropped first.
TOKEN_CACHE_SIZE = 10_000

# The revocation generation's value as Redis returns it; None before any revocation.
Generation = bytes | str | None


class TokenAccess:
    """The token operations of the service; it supplies the settings, Redis and the database."""

    settings: Settings
    redis: redis.Redis
    engine: Engine
    sessions: sessionmaker[Session]

    def __init__(self) -> None:
        self._token_cache: TTLCache[str, Principal] = TTLCache(
            maxsize=TOKEN_CACHE_SIZE, ttl=TOKEN_CACHE_TTL_S
        )
        self._token_generation: Generation = None
        self._token_lock = threading.Lock()

    @property
    def token_generation_key(self) -> str:
        """The Redis key a revocation moves on, so every API process drops its cached tokens."""
        return f"{self.settings.key_prefix}:tokens:generation"

    def cached_principal(self, token: str, generation: Generation) -> Principal | None:
        """The principal behind a token looked up in the last minute, without touching SQL,
        if no token was revoked since (`generation`: the key's value read just before)."""
        with self._token_lock:
            if generation != self._token_generation:
                return None
            return self._token_cache.get(token)

    def cached_as_last_read(self, token: str) -> tuple[Principal, Generation] | None:
        """The principal behind a token looked up in the last minute, and the generation
        last read, at which it was valid; whoever acts on it must check that no token was
        revoked since (as a submission's create does, atomically)."""
        with self._token_lock:
            principal = self._token_cache.get(token)
            return None if principal is None else (principal, self._token_generation)

    def token_check(self, checked_at: tuple[Generation] | None) -> tuple[str, str] | None:
        """What a create compares to refuse a submission whose token was found valid at the
        generation `checked_at` holds once a token has been revoked since: the counter's key
        and the value it had. A 1-tuple, as None is a generation too (no revocation yet);
        None checks nothing."""
        if checked_at is None:
            return None
        (generation,) = checked_at
        text = generation.decode() if isinstance(generation, bytes) else generation
        return self.token_generation_key, text or ""

    def authenticate(self, token: str) -> Principal:
        """The principal behind a bearer token."""
        # Read before the cache and any SQL lookup: a revocation that lands meanwhile has
        # moved the generation on, so what this request caches is dropped by the next one.
        generation = self.redis.get(self.token_generation_key)
        with self._token_lock:
            if generation != self._token_generation:
                self._token_cache.clear()
                self._token_generation = generation
            cached = self._token_cache.get(token)
        if cached is not None:
            return cached
        principal = self._look_up_token(token)
        with self._token_lock:
            if generation == self._token_generation:
                self._token_cache[token] = principal
        return principal

    def _look_up_token(self, token: str) -> Principal:
        wall_now = datetime.now(UTC)
        with self.sessions() as session, session.begin():
            row = tokens.find_token(session, token)
            if row is None:
                raise Unauthorized("the bearer token is not valid")
            principal = tokens.principal_of(row)
            stale = tokens.needs_touch(row, wall_now)
        if stale and principal.token_id is not None:
            with writer_turn(self.engine), self.engine.begin() as connection:
                tokens.touch_token(connection, principal.token_id, wall_now)
        return principal

    def create_token(self, role: str, name: str, device: str | None = None) -> str:
        """A new token for `name` with `role` (and `device`, for a device token)."""
        with write_session(self.sessions) as session:
            return tokens.create_token(session, role, name, device)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token, without its secret."""
        with self.sessions() as session, session.begin():
            return tokens.list_tokens(session)

    def revoke_token(self, token_id: int, by: str) -> None:
        """Delete a token; every API process refuses it from its next request on."""
        with write_session(self.sessions) as session:
            if not tokens.delete_token(session, token_id):
                raise NotFound(f"no token with id {token_id}")
        # After the commit: a process that sees the new generation finds the row gone.
        self.redis.incr(self.token_generation_key)
        log.info("token revoked", extra={"token_id": token_id, "by": by})

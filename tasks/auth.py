"""Bearer tokens and roles: tokens are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

# Higher rank may do everything a lower rank may. The device role only reaches its own
# commands, so it ranks below viewer for everything else.
ROLE_RANK: dict[str, int] = {"device": 0, "viewer": 1, "operator": 2, "admin": 3}
TOKEN_PREFIX = "hwq_"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and role (and device, for a device token)."""

    name: str
    role: str
    device: str | None = None
    token_id: int | None = None


def new_token() -> str:
    """A fresh random bearer token, shown to its owner once."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token; a fast hash is enough for 256 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()

"""Bearer tokens in SQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tasks.auth import ROLE_RANK, Principal, hash_token, new_token
from tasks.db.models import TokenRow
from tasks.errors import ValidationFailed


def create_token(session: Session, role: str, name: str) -> str:
    """Store a new token's hash and return the token itself, which is never stored."""
    if role not in ROLE_RANK:
        raise ValidationFailed(f"role must be one of {', '.join(ROLE_RANK)}, got {role!r}")
    token = new_token()
    session.add(
        TokenRow(name=name, role=role, token_hash=hash_token(token), created_at=datetime.now(UTC))
    )
    return token


def find_principal(session: Session, token: str) -> Principal | None:
    """The principal a token stands for, or None."""
    row = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))
    return Principal(name=row.name, role=row.role) if row else None

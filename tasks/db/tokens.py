"""Bearer tokens in SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from tasks.auth import ROLE_RANK, Principal, hash_token, new_token
from tasks.db.models import TokenRow
from tasks.errors import ValidationFailed
from tasks.queues import DEVICE_NAME_PATTERN

# The only role bound to a device: an HTTP-polling device's own (DESIGN §10).
DEVICE_ROLE = "device"
# A token's last_used_at is written again only once it is this old.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def check_token_request(role: str, device: str | None) -> None:
    """Refuse an unknown role, a device token without its device, or a device on another role."""
    if role not in ROLE_RANK:
        raise ValidationFailed(f"role must be one of {', '.join(ROLE_RANK)}, got {role!r}")
    if role == DEVICE_ROLE and not device:
        raise ValidationFailed("a device token needs the device it acts for (--device NAME)")
    if role != DEVICE_ROLE and device:
        raise ValidationFailed(f"only a device token is bound to a device, not a {role} token")
    if device and not DEVICE_NAME_PATTERN.match(device):
        raise ValidationFailed(f"{device!r} is not a device name")


def create_token(session: Session, role: str, name: str, device: str | None = None) -> str:
    """Store a new token's hash and return the token itself, which is never stored."""
    check_token_request(role, device)
    token = new_token()
    session.add(
        TokenRow(
            name=name,
            role=role,
            device=device,
            token_hash=hash_token(token),
            created_at=datetime.now(UTC),
        )
    )
    return token


def find_token(session: Session, token: str) -> TokenRow | None:
    """The stored row of a token, or None."""
    return session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(token)))


def principal_of(row: TokenRow) -> Principal:
    """Who a token row stands for."""
    return Principal(name=row.name, role=row.role, device=row.device, token_id=row.id)


def find_principal(session: Session, token: str) -> Principal | None:
    """The principal a token stands for, or None."""
    row = find_token(session, token)
    return principal_of(row) if row else None


def needs_touch(row: TokenRow, now: datetime) -> bool:
    """Whether the row's last_used_at is missing or older than its resolution."""
    last = row.last_used_at
    if last is not None and last.tzinfo is None:  # SQLite gives naive datetimes back
        last = last.replace(tzinfo=UTC)
    return last is None or now - last >= LAST_USED_RESOLUTION


def touch_token(connection: Connection, token_id: int, now: datetime) -> None:
    """Record that a token was used at `now`."""
    connection.execute(update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now))


def token_view(row: TokenRow) -> dict[str, Any]:
    """A token as GET /tokens shows it: never its hash."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "device": row.device,
        "created_at": _iso(row.created_at),
        "last_used_at": _iso(row.last_used_at),
    }


def list_tokens(session: Session) -> list[dict[str, Any]]:
    """Every token, oldest first."""
    return [token_view(row) for row in session.scalars(select(TokenRow).order_by(TokenRow.id))]


def delete_token(session: Session, token_id: int) -> bool:
    """Delete a token; False if there was none with that id."""
    row = session.get(TokenRow, token_id)
    if row is None:
        return False
    session.delete(row)
    return True


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

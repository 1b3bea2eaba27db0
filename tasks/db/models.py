"""SQLAlchemy models of the results database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Base class of every hwq table."""


class DeviceRow(Base):
    """A registered device."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    transport: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(Text, nullable=True)
    baudrate: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Deactivated: its host agent stops its worker and releases the port; commands still queue.
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CommandRow(Base):
    """One accepted command, from submission to its terminal state."""

    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_device_created", "device", "created_at", "id"),
        Index("ix_commands_created", "created_at", "id"),
        Index("ix_commands_state", "state"),
        Index("uq_commands_user_idempotency_key", "user", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device: Mapped[str] = mapped_column(String(63))
    user: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[Any] = mapped_column(JSON)
    read: Mapped[Any] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    response: Mapped[Any] = mapped_column(JSON, nullable=True)
    analysis: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    timeout_s: Mapped[float] = mapped_column(Float)
    expires_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    idempotent: Mapped[bool] = mapped_column(default=False)
    # The last event the recorder applied, so replays and out-of-order copies change nothing.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The client's Idempotency-Key, if it sent one, and a digest of what it submitted with it.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CommandEventRow(Base):
    """One transition of a command, as the recorder copied it from Redis."""

    __tablename__ = "command_events"
    __table_args__ = (UniqueConstraint("command_id", "seq", name="uq_command_events_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Looked up through uq_command_events_seq, whose leading column it is.
    command_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class TokenRow(Base):
    """A bearer token, stored only as its hash."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The device a `device` token may act for; None for every other role.
    device: Mapped[str | None] = mapped_column(String(63), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Updated at most once a minute per API process, never on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

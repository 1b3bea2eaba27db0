"""The device registry in SQL, the source of truth the Redis mirror is built from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tasks.db.models import CommandRow, DeviceRow

# Settings a worker beside the hardware needs; mirrored to Redis.
WORKER_FIELDS = (
    "name",
    "transport",
    "address",
    "baudrate",
    "codec",
    "options",
    "host",
    "active",
)


def device_values(row: DeviceRow) -> dict[str, Any]:
    """A device row as plain values."""
    return {
        "name": row.name,
        "transport": row.transport,
        "address": row.address,
        "baudrate": row.baudrate,
        "codec": row.codec,
        "options": row.options,
        "host": row.host,
        "active": row.active,
        "created_at": row.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def get_device(session: Session, name: str) -> DeviceRow | None:
    """A device by name."""
    return session.scalar(select(DeviceRow).where(DeviceRow.name == name))


def list_devices(session: Session) -> list[DeviceRow]:
    """Every device, by name."""
    return list(session.scalars(select(DeviceRow).order_by(DeviceRow.name)))


def add_device(session: Session, spec: dict[str, Any]) -> DeviceRow:
    """Register a device; the caller checks the name is free."""
    row = DeviceRow(
        name=spec["name"],
        transport=spec.get("transport") or "serial",
        address=spec.get("address"),
        baudrate=spec.get("baudrate") or 115200,
        codec=spec.get("codec") or "line",
        options=spec.get("options") or {},
        host=spec.get("host"),
        active=spec.get("active", True),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row


def change_device(session: Session, row: DeviceRow, changes: dict[str, Any]) -> None:
    """Apply settings; a rename carries the device's command history along."""
    old_name = row.name
    for key, value in changes.items():
        setattr(row, key, value)
    if "name" in changes and changes["name"] != old_name:
        session.execute(
            update(CommandRow).where(CommandRow.device == old_name).values(device=changes["name"])
        )
    session.flush()

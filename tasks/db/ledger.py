"""The command ledger: rows the API inserts and the recorder brings up to date."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    Update,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tasks.command_record import parse_iso
from tasks.command_values import CommandValues
from tasks.db.models import CommandEventRow, CommandRow
from tasks.errors import ValidationFailed

_TIME_FIELDS = ("created_at", "dispatched_at", "responded_at", "finished_at")
# Columns the recorder may overwrite from a transition entry.
_RECORDED_FIELDS = (
    "state",
    # Stamped by Redis when the command reached its queue; the API's own guess until then.
    "created_at",
    "response",
    "analysis",
    "error",
    "attempts",
    "dispatched_at",
    "responded_at",
    "finished_at",
)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return _iso_utc(value)


def _iso_utc(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Built once: a statement without literal values is compiled once and cached per dialect, where
# `insert(...).values(...)` was rebuilt, coerced and cache-keyed anew for every command.
INSERT_COMMAND = insert(CommandRow)
_DELETE_COMMAND = delete(CommandRow).where(CommandRow.id == bindparam("command_id"))


def insert_command(connection: Connection, values: CommandValues) -> None:
    """Add an accepted command's row; the caller commits before publishing."""
    # A Core insert: the ORM's unit of work costs more than the row on this hot path.
    connection.execute(INSERT_COMMAND, command_row(values))


def command_row(values: CommandValues) -> dict[str, Any]:
    """The ledger row of a command just accepted, by column."""
    return {
        "id": values["id"],
        "device": values["device"],
        "user": values["user"],
        "kind": values["kind"],
        "payload": values["payload"],
        "read": values.get("read"),
        "state": "queued",
        "response": None,
        "analysis": values.get("analysis"),
        "error": None,
        "attempts": 0,
        "timeout_s": values["timeout_s"],
        "expires_s": values.get("expires_s"),
        "idempotent": values["idempotent"],
        "last_seq": 0,
        "created_at": parse_iso(values["created_at"]),
        "idempotency_key": values.get("idempotency_key"),
        "request_digest": values.get("request_digest"),
    }


def delete_command(connection: Connection, command_id: str) -> None:
    """Remove a row whose command could not be published (nothing half-created)."""
    connection.execute(_DELETE_COMMAND, {"command_id": command_id})


def command_view(row: CommandRow) -> CommandValues:
    """A ledger row as the internal command values (same shape as the live store's)."""
    return {
        "id": row.id,
        "device": row.device,
        "user": row.user,
        "kind": row.kind,
        "payload": row.payload,
        "read": row.read,
        "state": row.state,
        "response": row.response,
        "analysis": row.analysis,
        "error": row.error,
        "attempts": row.attempts,
        "timeout_s": row.timeout_s,
        "expires_s": row.expires_s,
        "idempotent": row.idempotent,
        "created_at": _iso_utc(row.created_at),
        "dispatched_at": _iso(row.dispatched_at),
        "responded_at": _iso(row.responded_at),
        "finished_at": _iso(row.finished_at),
    }


def get_command(session: Session, command_id: str) -> CommandRow | None:
    """One ledger row."""
    return session.get(CommandRow, command_id)


def by_idempotency_key(session: Session, user: str, key: str) -> CommandRow | None:
    """The command `user` submitted with Idempotency-Key `key`, if any."""
    return session.scalars(
        select(CommandRow).where(CommandRow.user == user, CommandRow.idempotency_key == key)
    ).first()


# A cursor is the last row's creation time, in microseconds since 1970, and its id: every
# string of this shape names a position, so none that matches can be refused later.
CURSOR_SHAPE = re.compile(r"^([0-9]{1,16})\.([0-9a-f-]{1,36})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _encode_cursor(row: CommandRow) -> str:
    created = row.created_at
    if created.tzinfo is None:  # SQLite hands times back without their zone, which is UTC
        created = created.replace(tzinfo=UTC)
    return f"{(created - _EPOCH) // _MICROSECOND}.{row.id}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    match = CURSOR_SHAPE.match(cursor)
    if match is None:
        raise ValidationFailed(
            "cursor is not one this server handed out",
            [{"field": "cursor", "message": "unknown cursor"}],
        )
    return _EPOCH + int(match[1]) * _MICROSECOND, match[2]


def list_commands(
    session: Session, *, device: str | None, state: str | None, limit: int, cursor: str | None
) -> tuple[list[CommandRow], str | None]:
    """History, newest first, a page at a time; the cursor is the last row's (time, id)."""
    query = select(CommandRow)
    if device:
        query = query.where(CommandRow.device == device)
    if state:
        query = query.where(CommandRow.state == state)
    if cursor:
        created, command_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                CommandRow.created_at < created,
                and_(CommandRow.created_at == created, CommandRow.id < command_id),
            )
        )
    query = query.order_by(CommandRow.created_at.desc(), CommandRow.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    if len(rows) > limit:
        return rows[:limit], _encode_cursor(rows[limit - 1])
    return rows, None


def events(session: Session, command_id: str) -> list[dict[str, Any]]:
    """A command's recorded events, in order."""
    rows = session.scalars(
        select(CommandEventRow)
        .where(CommandEventRow.command_id == command_id)
        .order_by(CommandEventRow.seq)
    )
    return [{"state": r.state, "at": _iso(r.at), "detail": r.detail} for r in rows]


def record_transitions(session: Session, entries: list[dict[str, Any]]) -> None:
    """Apply a batch of transitions idempotently: each event once, each row only forward.

    A few statements per batch rather than per entry keep the write lock short, which is
    what SQLite's single writer (the API inserting commands) waits on.
    """
    if not entries:
        return
    # Within the batch each event once; against the table, the insert skips recorded ones.
    fresh: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in entries:
        key = (entry["id"], int(entry["seq"]))
        fresh.setdefault(
            key,
            {
                "command_id": entry["id"],
                "seq": key[1],
                "state": entry["state"],
                "at": parse_iso(entry["at"]),
                "detail": entry.get("detail"),
            },
        )
    connection = session.connection()
    if fresh:
        connection.execute(_insert_events_once(connection.dialect.name), list(fresh.values()))
    # Rows changing the same columns share one prepared UPDATE, run once for all of them.
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for command_id, changes in _latest_changes(entries).items():
        columns = tuple(sorted(changes))
        row = {f"new_{name}": value for name, value in changes.items()}
        by_columns.setdefault(columns, []).append({**row, "row_id": command_id})
    for columns, rows in by_columns.items():
        connection.execute(_update_forward(columns), rows)


# The insert that skips rows already there is spelled per dialect; hwq runs on these two.
_DIALECT_INSERTS: dict[str, Callable[[type[Any]], Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


@functools.cache
def _insert_events_once(dialect: str) -> Insert:
    """An event-row insert that skips rows already recorded (replays, a second recorder).

    Executed with a list of rows: one statement for the whole batch, and no read first, which
    cost the recorder as much as its writes.
    """
    if dialect not in _DIALECT_INSERTS:
        raise ValueError(f"the ledger runs on SQLite or PostgreSQL, not {dialect}")
    statement: Insert = _DIALECT_INSERTS[dialect](CommandEventRow).on_conflict_do_nothing(
        index_elements=["command_id", "seq"]
    )
    return statement


@functools.lru_cache(maxsize=64)
def _update_forward(columns: tuple[str, ...]) -> Update:
    """UPDATE of `columns` for a row whose last applied event is older than this one's.

    Bind names carry a prefix: SQLAlchemy keeps a column's own name for its SET value.
    """
    return (
        update(CommandRow)
        .where(
            CommandRow.id == bindparam("row_id"),
            CommandRow.last_seq < bindparam("new_last_seq"),
        )
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


def _latest_changes(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per command, its recorded columns as the newest entry in the batch leaves them."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: (e["id"], int(e["seq"]))):
        changes = merged.setdefault(entry["id"], {})
        changes["last_seq"] = int(entry["seq"])
        for name in _RECORDED_FIELDS:
            if name in entry:
                value = entry[name]
                if name in _TIME_FIELDS and value:
                    value = parse_iso(value)
                changes[name] = value
    return merged


def unfinished(session: Session) -> list[CommandRow]:
    """Commands the ledger shows as not yet terminal, for recovery after Redis lost data."""
    return list(
        session.scalars(
            select(CommandRow)
            .where(CommandRow.state.in_(("queued", "dispatched", "responded")))
            .order_by(CommandRow.created_at, CommandRow.id)
        )
    )

"""History cursors and stored JSON, read back from SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from api.schemas import CommandListQuery
from tasks.command_record import utc_now_iso
from tasks.db import ledger
from tasks.db.engine import make_engine, make_sessions, migrate
from tasks.errors import ValidationFailed
from tasks.json_bounds import UNREADABLE_VALUE

from command_factory import command_values


def test_cursors_page_through_history_and_match_the_documented_shape(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessions(engine)
    start = datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC)
    # Two rows share a time: the id orders them.
    times = [start, start, start + timedelta(microseconds=1), start + timedelta(seconds=1)]
    ids = []
    with sessions() as session, session.begin():
        for at in times:
            values = command_values("pager", created_at=at.isoformat().replace("+00:00", "Z"))
            ledger.insert_command(session.connection(), values)
            ids.append(values["id"])
    expected = [ids[3], ids[2], *sorted(ids[:2], reverse=True)]
    with sessions() as session:
        first, cursor = ledger.list_commands(
            session, device="pager", state=None, limit=3, cursor=None
        )
        assert cursor is not None
        # What the server hands out is what the document says a cursor looks like.
        assert CommandListQuery.model_validate({"cursor": cursor}).cursor == cursor
        rest, last = ledger.list_commands(
            session, device="pager", state=None, limit=3, cursor=cursor
        )
    assert [row.id for row in first + rest] == expected and last is None
    with sessions() as session:
        # Any cursor of that shape is a position: past every row, the page is empty.
        assert ledger.list_commands(session, device="pager", state=None, limit=5, cursor="0.0") == (
            [],
            None,
        )
        with pytest.raises(ValidationFailed):
            ledger.list_commands(session, device=None, state=None, limit=5, cursor="MjAy")
    engine.dispose()


def test_a_stored_value_too_deep_is_read_as_unreadable(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_sessions(engine)
    values = command_values("deep", created_at=utc_now_iso())
    with sessions() as session, session.begin():
        ledger.insert_command(session.connection(), values)
        deep = "[" * 5000 + "]" * 5000
        session.execute(
            text("UPDATE commands SET analysis = :deep WHERE id = :id"),
            {"deep": json.dumps({"value": "x"})[:-1] + f', "v": {deep}}}', "id": values["id"]},
        )
    with sessions() as session:
        rows, _ = ledger.list_commands(session, device="deep", state=None, limit=5, cursor=None)
        assert [ledger.command_view(row)["analysis"] for row in rows] == [UNREADABLE_VALUE]
    engine.dispose()

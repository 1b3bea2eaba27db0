"""The API's driver-level insert stores a row exactly as SQLAlchemy's Core insert does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from tasks.db import ledger
from tasks.db.command_insert import CommandInsert
from tasks.db.engine import make_engine, make_sessions, migrate

from command_factory import command_values


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _stored(engine: Engine, command_id: str) -> dict[str, object]:
    """The row as the ledger reads it back."""
    with make_sessions(engine)() as session:
        row = ledger.get_command(session, command_id)
        assert row is not None, f"no row for {command_id}"
        view = ledger.command_view(row)
    view.pop("id")
    return view


def _raw(engine: Engine, command_id: str) -> dict[str, object]:
    """The row as the database holds it, before any conversion on the way out."""
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM commands WHERE id = :id"), {"id": command_id}
        ).one()
    stored = dict(row._mapping)
    stored.pop("id")
    return stored


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "kind": "raw",
            "payload": "AAE=",
            "read": {"until": "Cg==", "idle_ms": 50},
            "expires_s": 2.5,
            "idempotent": True,
            "analysis": {"analyzer": "number", "params": {"min": 0}, "value": None},
        },
    ],
    ids=["plain", "every-field"],
)
def test_a_row_reads_back_as_the_core_insert_stores_it(
    engine: Engine, extra: dict[str, object]
) -> None:
    through_core = command_values("dev0", **extra)
    through_driver = {**through_core, "id": command_values("dev0")["id"]}
    with engine.begin() as connection:
        ledger.insert_command(connection, through_core)
    CommandInsert(engine).insert(through_driver)
    assert _stored(engine, through_driver["id"]) == _stored(engine, through_core["id"])
    assert _raw(engine, through_driver["id"]) == _raw(engine, through_core["id"])


def test_a_refused_insert_raises_sqlalchemys_error_and_the_next_one_works(
    engine: Engine,
) -> None:
    inserter = CommandInsert(engine)
    values = command_values("dev0")
    inserter.insert(values)
    with pytest.raises(IntegrityError):
        inserter.insert(values)
    again = command_values("dev0")
    inserter.insert(again)
    assert _stored(engine, again["id"])["state"] == "queued"

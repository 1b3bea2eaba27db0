"""Migration 0005: devices gain `active`, true for every device registered before it."""

from __future__ import annotations

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text

from tasks.db import registry
from tasks.db.engine import MIGRATIONS_DIR, make_engine, make_sessions, migrate


def _alembic(engine: object, target: str, downgrade: bool = False) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:  # type: ignore[attr-defined]
        config.attributes["connection"] = connection
        (alembic_command.downgrade if downgrade else alembic_command.upgrade)(config, target)


def test_devices_registered_before_stay_active_and_new_ones_default_active(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    _alembic(engine, "0004")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO devices (name, transport, address, baudrate, codec, options, host, "
            "created_at) VALUES ('dmm', 'serial', 'loop://', 9600, 'line', '{}', 'pi-3', "
            "CURRENT_TIMESTAMP)"
        ))  # fmt: skip
    migrate(engine)
    sessions = make_sessions(engine)
    with sessions() as session, session.begin():
        old = registry.get_device(session, "dmm")
        assert old is not None and old.active is True
        new = registry.add_device(session, {"name": "scope", "address": "loop://"})
        assert registry.device_values(new)["active"] is True
        registry.change_device(session, new, {"active": False})
    with sessions() as session:
        row = registry.get_device(session, "scope")
        assert row is not None and row.active is False
    _alembic(engine, "0004", downgrade=True)
    columns = {c["name"] for c in inspect(engine).get_columns("devices")}
    assert "active" not in columns
    engine.dispose()

"""Engines and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, inspect, make_url
from sqlalchemy.orm import Session, sessionmaker

from config.settings import DEFAULT_SQLITE_LOCK_TIMEOUT_S
from tasks.db.write_lock import TIMEOUT_OPTION, writer_turn
from tasks.errors import ConfigError
from tasks.json_bounds import decode_stored_json

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(
    url: str,
    writes_first: bool = False,
    lock_timeout_s: float = DEFAULT_SQLITE_LOCK_TIMEOUT_S,
) -> Engine:
    """An engine for `url`; SQLite gets WAL so readers never block the recorder.

    `writes_first`: every SQLite transaction takes the write lock when it begins. A
    transaction that reads and then writes (the recorder's) would otherwise fail at once
    when another process committed in between, instead of waiting its turn.
    `lock_timeout_s`: how long a writer waits for its turn at a SQLite file
    (`tasks/db/write_lock.py`) before it gives up.
    """
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            json_deserializer=decode_stored_json,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if writes_first:
            event.listen(engine, "connect", _sqlite_manual_transactions)
            event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine.execution_options(**{TIMEOUT_OPTION: lock_timeout_s})
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        json_deserializer=decode_stored_json,
    )


# A writer whose commit takes the write-ahead log past this many pages copies the log into
# the database and syncs both before its commit returns: milliseconds, in whichever request
# happens to cross the line. The server worker checkpoints long before (see
# `checkpoint_passively`); this larger bound only holds when no server worker runs.
BACKSTOP_CHECKPOINT_PAGES = 16384


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
    cursor.close()


def checkpoint_passively(engine: Engine) -> tuple[int, int] | None:
    """Copy what the SQLite write-ahead log holds into the database, without blocking writers.

    Returns the log's pages and how many of them are now in the database, or None where
    there is nothing to do (PostgreSQL, an in-memory database).
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    # On the driver's connection itself: a checkpoint cannot run inside a transaction, and
    # an engine made with `writes_first` opens one for every statement it is handed.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        _busy, log_pages, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        cursor.close()
    finally:
        connection.close()
    return int(log_pages), int(copied)


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN would come first; SQLAlchemy's "begin" event says when.
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with writer_turn(engine), engine.begin() as connection:
        config.attributes["connection"] = connection
        alembic_command.upgrade(config, "head")


def open_existing(url: str, lock_timeout_s: float = DEFAULT_SQLITE_LOCK_TIMEOUT_S) -> Engine:
    """An engine on a hwq database that exists already, brought to the newest schema.

    For commands that only add to a running system's ledger (`hwq token create`): a wrong
    folder or URL must not quietly start a database of its own. ConfigError if there is none.
    """
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path != ":memory:" and not Path(path).is_file():
            raise ConfigError(
                f"there is no hwq database at {path}; run this where `hwq up` runs, set "
                "HWQ_HOME to its folder or HWQ_DATABASE_URL to its database, or create one "
                "with `hwq migrate`"
            )
    engine = make_engine(url, lock_timeout_s=lock_timeout_s)
    if not inspect(engine).has_table("tokens"):
        engine.dispose()
        raise ConfigError(
            f"the database at {make_url(url).render_as_string(hide_password=True)} holds no "
            "hwq schema; create it with `hwq migrate`, or set HWQ_DATABASE_URL to the running "
            "system's database"
        )
    migrate(engine)
    return engine

"""The API's insert of an accepted command's row, straight through the database driver.

A submission commits its ledger row before its message exists, so the insert sits on the
path of every command, on the API's side and on the device's. Through SQLAlchemy's
`Connection` (the transaction object, the execution context, the result) it cost about three
times what the driver's own insert and commit did (bench/README.md). Here SQLAlchemy still
compiles the statement and supplies each column's conversion for the dialect, once per
engine, so the row is stored exactly as `ledger.insert_command` stores it; each insert then
only converts the values and runs one `execute` and one `commit` on a pooled connection.
Driver errors come out wrapped as SQLAlchemy's, as from any other query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from tasks.command_values import CommandValues
from tasks.db.ledger import INSERT_COMMAND, command_row
from tasks.db.models import CommandRow
from tasks.db.write_lock import writer_turn


@dataclass(frozen=True)
class _Prepared:
    """The statement for one dialect, its parameter order, and each column's conversion."""

    statement: str
    # Positional drivers (SQLite's ?) take a tuple in this order; named ones a mapping.
    positions: tuple[str, ...] | None
    converters: dict[str, Callable[[Any], Any] | None]


class CommandInsert:
    """Inserts and commits command rows on `engine`, one transaction each."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._prepared: _Prepared | None = None

    def _prepare(self, keys: list[str]) -> _Prepared:
        dialect = self.engine.dialect
        compiled = INSERT_COMMAND.compile(dialect=dialect, column_keys=keys)
        columns = CommandRow.__table__.columns
        return _Prepared(
            statement=compiled.string,
            positions=tuple(compiled.positiontup) if compiled.positiontup else None,
            converters={
                key: columns[key].type.dialect_impl(dialect).bind_processor(dialect)
                for key in keys
            },
        )

    def insert(self, values: CommandValues) -> None:
        """Insert the row of a command just accepted and commit it."""
        row = command_row(values)
        # Made on first use, when the row's columns are known; threads racing here make the
        # same thing.
        prepared = self._prepared or self._prepare(list(row))
        self._prepared = prepared
        for key, convert in prepared.converters.items():
            if convert is not None:
                row[key] = convert(row[key])
        parameters: Any = (
            row if prepared.positions is None else tuple(row[k] for k in prepared.positions)
        )
        driver_error = self.engine.dialect.loaded_dbapi.Error
        with writer_turn(self.engine):
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(prepared.statement, parameters)
                finally:
                    cursor.close()
                connection.commit()
            except driver_error as e:
                # The connection's state is unknown after a failure: the pool makes another.
                connection.invalidate()
                raise DBAPIError.instance(prepared.statement, parameters, e, driver_error) from e
            finally:
                connection.close()

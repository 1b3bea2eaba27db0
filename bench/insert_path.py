"""The ledger insert of a submission: through the database driver (`CommandInsert`, what the
API runs) against SQLAlchemy's Core insert in a transaction (`ledger.insert_command`), each
with its commit, on SQLite, in one quiet process. Rounds alternate so drift hits both alike.

Run: python -m bench.insert_path [--rows N]. Prints microseconds per insert and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tasks.command_record import utc_now_iso
from tasks.command_values import CommandValues
from tasks.db import ledger
from tasks.db.command_insert import CommandInsert
from tasks.db.engine import make_engine, migrate
from tasks.db.write_lock import writer_turn

ROUNDS = 10


def _values() -> CommandValues:
    return {
        "id": str(uuid.uuid4()),
        "device": "bench",
        "user": "bench",
        "kind": "line",
        "payload": "*IDN?",
        "read": None,
        "timeout_s": 5.0,
        "expires_s": None,
        "idempotent": False,
        "analysis": None,
        "attempts": 0,
        "created_at": utc_now_iso(),
    }


def _per_insert_us(insert: Callable[[CommandValues], None], rows: int) -> float:
    batch = [_values() for _ in range(rows)]
    started = time.perf_counter()
    for values in batch:
        insert(values)
    return (time.perf_counter() - started) / rows * 1e6


def main() -> None:
    """Measure both insert paths and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500, help="inserts per round and path")
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'hwq.db'}")
        migrate(engine)
        driver = CommandInsert(engine)

        def core(values: CommandValues) -> None:
            with writer_turn(engine), engine.begin() as connection:
                ledger.insert_command(connection, values)

        driver_us: list[float] = []
        core_us: list[float] = []
        for _ in range(ROUNDS):
            driver_us.append(_per_insert_us(driver.insert, rows))
            core_us.append(_per_insert_us(core, rows))
        engine.dispose()
    driver_median, core_median = statistics.median(driver_us), statistics.median(core_us)
    print(f"ledger insert + commit, SQLite, {ROUNDS} rounds of {rows}:")
    print(f"  through the driver (CommandInsert): {driver_median:7.1f} µs")
    print(f"  SQLAlchemy Core (insert_command):   {core_median:7.1f} µs")
    print(f"  saved per submission: {core_median - driver_median:.1f} µs "
          f"(Core / driver = {core_median / driver_median:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()

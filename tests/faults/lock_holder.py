"""A process of its own that takes a SQLite database's writer lock and holds it until told.

Run as a script by `writer_lock_held`: it prints `held` once it has the lock and lets go
when its stdin closes, which is how a writer that stalls looks to every other one.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Longest the holder may take to start and take the lock on a busy two-core machine.
START_TIMEOUT_S = 60.0


@contextmanager
def writer_lock_held(database: Path, user: int | None = None) -> Iterator[None]:
    """Hold `database`'s writer lock from another process (as `user`, uid and gid) for the block.

    Another user's process is started through util-linux's `setpriv`, which a caller checks
    for (`shutil.which`).
    """
    as_user = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}",
                                       "--clear-groups"]  # fmt: skip
    holder = subprocess.Popen(
        [*as_user, sys.executable, __file__, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        line = _read_line(holder, START_TIMEOUT_S)
        assert line == "held", f"the holder did not take the lock: {line!r}"
        yield
    finally:
        holder.stdin.close()
        try:
            holder.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
        holder.stdout.close()
        if holder.stderr is not None:
            holder.stderr.close()


def _read_line(holder: subprocess.Popen[str], timeout_s: float) -> str:
    """The holder's first line, or what it said on stderr if it exited first."""
    assert holder.stdout is not None and holder.stderr is not None
    with selectors.DefaultSelector() as selector:
        selector.register(holder.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return "(nothing within the start timeout)"
    line = holder.stdout.readline().strip()
    if not line and holder.wait(5) is not None:
        return f"(exited {holder.returncode}: {holder.stderr.read()[-2000:]})"
    return line


def main() -> None:
    """Take the writer's turn on the database named by argv[1]; hold it until stdin closes."""
    from sqlalchemy import create_engine

    from tasks.db.write_lock import writer_turn

    engine = create_engine(f"sqlite:///{sys.argv[1]}")
    with writer_turn(engine):
        print("held", flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()

"""Writers of one SQLite file take turns here, across threads and processes.

SQLite has a single writer. A connection that finds the file locked sleeps in its busy
handler, in steps growing to 100 ms, before it looks again; with the API and the server
worker both writing, that made a submission wait up to tens of milliseconds behind a
recorder batch that had finished long before. A lock file held with flock(2) wakes the next
writer the moment the previous one lets go, whichever process it is in. PostgreSQL takes
row locks of its own and needs none of this.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

# The lock file sits beside the database: `<db>-writer.lock`.
LOCK_SUFFIX = "-writer.lock"


class FileWriteLock:
    """An exclusive lock on a file: one thread of this process, one process of the machine."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block."""
        # flock belongs to the open file, which every thread here shares: the thread lock
        # keeps this process's writers in line, the flock keeps other processes out.
        with self._threads:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


# One lock per database file in this process, however many engines point at it.
_locks: dict[str, FileWriteLock] = {}
_locks_guard = threading.Lock()


def writer_turn(bind: Engine | Connection) -> AbstractContextManager[Any]:
    """What a write transaction on `bind` holds around itself (nothing for PostgreSQL)."""
    engine = bind.engine
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return nullcontext()
    path = os.path.abspath(database) + LOCK_SUFFIX
    with _locks_guard:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = FileWriteLock(path)
    return lock.held()


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one write transaction, with the writer's turn held around it."""
    with sessions() as session, writer_turn(session.get_bind()), session.begin():
        yield session

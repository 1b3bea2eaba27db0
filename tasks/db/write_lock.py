"""Writers of one SQLite file take turns here, across threads and processes.

SQLite has a single writer. A connection that finds the file locked sleeps in its busy
handler, in steps growing to 100 ms, before it looks again; with the API and the server
worker both writing, that made a submission wait up to tens of milliseconds behind a
recorder batch that had finished long before. A lock file held with flock(2) wakes the next
writer the moment the previous one lets go, whichever process it is in. PostgreSQL takes
row locks of its own and needs none of this, and is the choice for many writers.

The wait for a turn is bounded (`HWQ_SQLITE_LOCK_TIMEOUT_S`, carried by the engine): a writer
that stalls while it holds the lock makes others fail with `WriterBusy` (503 with
Retry-After) instead of holding every submission for ever. flock(2) itself cannot time out,
so a writer that finds another process holding the lock looks again every
`BUSY_POLL_S`; writers of one process still queue on a thread lock and wake at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from config.settings import DEFAULT_SQLITE_LOCK_TIMEOUT_S
from tasks.errors import WriterBusy

log = logging.getLogger("hwq.db")

# The lock file sits beside the database: `<db>-writer.lock`.
LOCK_SUFFIX = "-writer.lock"
# The engine execution option that carries how long a writer waits for its turn.
TIMEOUT_OPTION = "hwq_writer_lock_timeout_s"
# How often a writer looks again while another process holds the lock: short beside a
# write transaction, so a turn that comes is taken soon after.
BUSY_POLL_S = 0.0005


class FileWriteLock:
    """An exclusive lock on a file: one thread of this process, one process of the machine."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def held(self, timeout_s: float = DEFAULT_SQLITE_LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the lock for the block; WriterBusy if it is not free within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        # flock belongs to the open file, which every thread here shares: the thread lock
        # keeps this process's writers in line, the flock keeps other processes out.
        if not self._threads.acquire(timeout=timeout_s):
            raise self._busy(timeout_s)
        try:
            if self._fd is None:
                self._fd = open_lock_file(self.path)
            self._take_turn(self._fd, deadline, timeout_s)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _take_turn(self, fd: int, deadline: float, timeout_s: float) -> None:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._busy(timeout_s) from None
                time.sleep(BUSY_POLL_S)

    def _busy(self, timeout_s: float) -> WriterBusy:
        log.warning("database writer lock busy", extra={"lock": self.path, "waited_s": timeout_s})
        # The lock's path stays in the log: the answer goes to clients.
        return WriterBusy(
            f"another writer has held the database for over {timeout_s:g} s; try again shortly",
            max(1, math.ceil(timeout_s)),
        )


def open_lock_file(path: str) -> int:
    """Open (or create) the lock file, read-only: flock needs no more, so any user who may
    read the file can take turns with the others.

    A new file gets the database's own permission bits, as SQLite gives its -wal and -shm
    files: whoever may write the database may share its lock. Without a database yet, the
    umask decides (`hwq up` runs with 077: owner only).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return os.open(path, os.O_RDONLY)
    database = path.removesuffix(LOCK_SUFFIX)
    try:
        mode = stat.S_IMODE(os.stat(database).st_mode) & 0o666
    except FileNotFoundError:
        return fd
    # A file system without permission bits keeps what it gave.
    with contextlib.suppress(OSError):
        os.fchmod(fd, mode)
    return fd


# One lock per database file in this process, however many engines point at it.
_locks: dict[str, FileWriteLock] = {}
_locks_guard = threading.Lock()


def writer_turn(bind: Engine | Connection) -> AbstractContextManager[Any]:
    """What a write transaction on `bind` holds around itself (nothing for PostgreSQL).

    On SQLite, WriterBusy if the turn does not come within the engine's lock timeout.
    """
    engine = bind.engine
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return nullcontext()
    path = os.path.abspath(database) + LOCK_SUFFIX
    with _locks_guard:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = FileWriteLock(path)
    timeout_s = bind.get_execution_options().get(TIMEOUT_OPTION, DEFAULT_SQLITE_LOCK_TIMEOUT_S)
    return lock.held(float(timeout_s))


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one write transaction, with the writer's turn held around it."""
    with sessions() as session, writer_turn(session.get_bind()), session.begin():
        yield session

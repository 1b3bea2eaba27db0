"""Wakes a Celery worker's event loop when a signal arrives, so an idle one stops at once.

Python runs a signal's handler in the main thread, then resumes the system call it
interrupted for the rest of its timeout. Celery's handler for Ctrl-C or SIGTERM only marks the
worker to stop; the loop sees that when its wait ends. An idle device worker's loop has
nothing to wake it but its next timer, up to its heartbeat interval away, so stopping took up
to that long. With the signal's wake-up byte written to a pipe the loop watches, the wait ends
the moment the signal comes.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import bootsteps


class WakeLoopOnSignal(bootsteps.StartStopStep):
    """Ends the event loop's wait on any signal (a consumer step: the loop is the consumer's)."""

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.read_fd: int | None = None

    def start(self, consumer: Any) -> None:
        hub = consumer.hub
        if hub is None:
            return
        if self.read_fd is None:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            # Only the main thread may set this; bootsteps start there.
            signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            self.read_fd = read_fd
        # The loop forgets its readers when it restarts after a lost connection: add it again.
        hub.add_reader(self.read_fd, self._drain)

    def _drain(self) -> None:
        # The handler has run already; the bytes only woke the loop.
        if self.read_fd is None:
            return
        try:
            while os.read(self.read_fd, 512):
                pass
        except BlockingIOError:
            pass

"""What Flower sees of a device worker's commands: task events, and the running command.

Celery's worker would send three task events per command (received, started, succeeded), one
publish each, and list the running task in its state. Here the command thread gathers the
events and publishes them together once EVENT_BATCH_S has passed since the first, between
commands; Flower shows them that much later, each stamped with the time it happened. During
a long command the command thread cannot publish, so a watcher thread does it a batch late:
a long command shows as started while it runs, and short ones never wait for the watcher.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

from tasks.celery_app import EXECUTE_TASK

log = logging.getLogger("hwq.device")

# How long task events may wait to share a publish.
EVENT_BATCH_S = 0.2
# How long a closing batch may take to publish what it still holds.
CLOSE_TIMEOUT_S = 5.0


class TaskEventBatch:
    """Task events gathered by the command thread and published in batches."""

    def __init__(self, app: Celery, hostname: str) -> None:
        self.connection = app.connection_for_write()
        self.dispatcher = app.events.Dispatcher(
            self.connection,
            hostname=hostname,
            enabled=bool(app.conf.worker_send_task_events),
            groups=["task"],
            buffer_group=["task"],
        )
        # When the batch gathering now is due; None while it is empty.
        self.flush_at: float | None = None
        # Guards the dispatcher's buffer, which the watcher flushes from its own thread.
        self._changed = threading.Condition()
        self._closing = False
        self._watcher = threading.Thread(target=self._watch, name="hwq-task-events",
                                         daemon=True)  # fmt: skip
        self._watcher.start()

    def send(self, event_type: str, **fields: Any) -> None:
        """Add an event to the batch; the first one of a batch sets when it goes out."""
        with self._changed:
            try:
                # A full buffer (the dispatcher's buffer_limit) is published here and now,
                # which bounds a batch's size and the pause its publish makes.
                self.dispatcher.send(event_type, **fields)
            except Exception as e:  # the broker is away: Flower misses these, commands do not
                log.warning("task events not sent", extra={"error": str(e)})
            if self.flush_at is None:
                self.flush_at = time.monotonic() + EVENT_BATCH_S
                self._changed.notify()

    def wait_s(self, idle_s: float) -> float:
        """How long the command thread may block before the batch is due, at most `idle_s`."""
        flush_at = self.flush_at
        if flush_at is None:
            return idle_s
        return min(idle_s, flush_at - time.monotonic())

    def flush_if_due(self) -> None:
        """Publish the batch once its time has come."""
        flush_at = self.flush_at
        if flush_at is not None and time.monotonic() >= flush_at:
            self.flush()

    def flush(self) -> None:
        """Publish what the batch holds now."""
        with self._changed:
            self._flush_locked()

    def close(self) -> None:
        """Publish what is left, stop the watcher and release the connection."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._watcher.join(CLOSE_TIMEOUT_S)
        self.flush()
        try:
            self.dispatcher.close()
            self.connection.release()
        except Exception as e:  # the broker is away; nothing is left to send
            log.warning("task event connection not closed", extra={"error": str(e)})

    def _flush_locked(self) -> None:
        self.flush_at = None
        try:
            self.dispatcher.flush()
        except Exception as e:  # the broker is away: Flower misses these, commands do not
            log.warning("task events not sent", extra={"error": str(e)})

    def _watch(self) -> None:
        # The command thread publishes a batch when it is due, between commands; a batch still
        # unpublished one batch interval after that waits on a long command, and goes now.
        with self._changed:
            while not self._closing:
                if self.flush_at is None:
                    self._changed.wait()
                    continue
                late = self.flush_at + EVENT_BATCH_S - time.monotonic()
                if late > 0:
                    self._changed.wait(late)
                else:
                    self._flush_locked()


@dataclass(frozen=True)
class RunningCommand:
    """A running command as Celery's worker state lists a task: `celery inspect active` and
    Flower's worker page show it, and the worker's heartbeats count it."""

    id: str
    hostname: str
    queue: str
    time_start: float
    name: str = EXECUTE_TASK

    def info(self, safe: bool = False) -> dict[str, Any]:
        """What `inspect active` reports for it, in the shape of a Celery request's."""
        args: Any = repr([self.id]) if safe else [self.id]
        return {
            "id": self.id,
            "name": self.name,
            "args": args,
            "kwargs": "{}" if safe else {},
            "type": self.name,
            "hostname": self.hostname,
            "time_start": self.time_start,
            "acknowledged": True,  # the claim is the acknowledgement
            "delivery_info": {"exchange": "", "routing_key": self.queue, "priority": 0,
                              "redelivered": False},  # fmt: skip
            "worker_pid": os.getpid(),
        }

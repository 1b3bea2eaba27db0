"""What Flower sees of an HTTP-polling device's commands: the task events a device worker
would send (received and started when the device collects the command, then its outcome),
sent by the API under the worker name `<device>@http-poll`.

A polling device has no worker process, so Flower lists no worker for it; its tasks show all
the same. A command the device leaves unanswered is ended timed_out by the reaper, and the
server worker reports that one (tasks/outcome_events.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery

from tasks.celery_app import EXECUTE_TASK
from tasks.outcome_events import outcome_event

log = logging.getLogger("hwq.poll")

# The host part of the worker name a polling device's task events carry.
POLL_HOST = "http-poll"


def poll_worker_name(device: str) -> str:
    """The worker name Flower shows for a polling device's tasks."""
    return f"{device}@{POLL_HOST}"


class PollTaskEvents:
    """Sends a polling device's task events; a broker that is away costs Flower, not commands."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def collected(self, command_id: str, device: str) -> None:
        """The device took the command: received and started."""
        now = time.time()
        self._send(device, [
            ("task-received", {"uuid": command_id, "name": EXECUTE_TASK,
                               "args": repr([command_id]), "kwargs": "{}", "root_id": command_id,
                               "parent_id": None, "retries": 0, "eta": None, "expires": None,
                               "timestamp": now}),
            ("task-started", {"uuid": command_id, "timestamp": now}),
        ])  # fmt: skip

    def ended(self, command_id: str, device: str, state: str, reason: str, response: Any) -> None:
        """The device's reply ended the command (`state`: where it went)."""
        event = outcome_event(state, reason, response)
        if event is not None:
            event_type, fields = event
            self._send(device, [(event_type, {"uuid": command_id, **fields})])

    def _send(self, device: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            with self.app.events.default_dispatcher(hostname=poll_worker_name(device)) as sender:
                for event_type, fields in events:
                    sender.send(event_type, **fields)
        except Exception as e:  # the broker is away: Flower misses these, the ledger does not
            log.warning("task events not sent", extra={"device": device, "error": str(e)})

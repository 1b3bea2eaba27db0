"""How a command's outcome shows in Flower: the Celery task event each terminal state maps to.

Flower knows a task only from Celery's task events, and Celery has three endings: succeeded,
failed and revoked. A command that ended failed, timed_out or interrupted shows as a failed
task whose exception names the outcome and its reason (`TimedOut('no complete reply …')`);
one that ended expired or cancelled as a revoked task, flagged `expired` as Celery flags a task
that expired in its queue; one that was answered (done, or responded and awaiting analysis)
as a succeeded task whose result is the reply.

A device worker reports the outcomes of the commands it runs. The others end without it
(cancelled while queued, expired, interrupted by the reaper), so the server worker reports
those, from the transitions the recorder copies.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from tasks.celery_app import EXECUTE_TASK
from tasks.lifecycle import State
from tasks.poll_claims import POLL_TIMEOUT_DETAIL

log = logging.getLogger("hwq.server")

# The exception name Flower shows for each outcome that is not an answer.
_OUTCOME_NAMES = {
    State.FAILED: "Failed",
    State.TIMED_OUT: "TimedOut",
    State.INTERRUPTED: "Interrupted",
    State.EXPIRED: "Expired",
    State.CANCELLED: "Cancelled",
}
_REVOKED = frozenset({State.EXPIRED, State.CANCELLED})
# Outcomes no device worker reports, because they come about without one.
SERVER_REPORTED = frozenset({State.CANCELLED, State.EXPIRED, State.INTERRUPTED})


def outcome_event(
    state: str, reason: str = "", response: object = None
) -> tuple[str, dict[str, Any]] | None:
    """The task event type and fields that show a command's outcome, None if `state` is none."""
    if state in (State.DONE, State.RESPONDED):
        return "task-succeeded", {"result": repr(response)}
    name = _OUTCOME_NAMES.get(state)  # type: ignore[call-overload]
    if name is None:
        return None
    exception = f"{name}({reason!r})"
    if state in _REVOKED:
        flags = {"terminated": False, "signum": None, "expired": state == State.EXPIRED}
        return "task-revoked", {**flags, "exception": exception}
    return "task-failed", {"exception": exception, "traceback": ""}


class ServerOutcomeEvents:
    """Sends Flower the outcomes that come about without a device worker."""

    def __init__(self, app: Celery, hostname: str) -> None:
        self.app = app
        self.hostname = hostname

    def report(self, transitions: list[dict[str, Any]]) -> None:
        """Send the task events of those among `transitions` that end in SERVER_REPORTED."""
        events = []
        for transition in transitions:
            if transition["state"] not in SERVER_REPORTED and not _unanswered_poll(transition):
                continue
            event = outcome_event(transition["state"], transition.get("detail") or "")
            if event is not None:
                events.append((transition["id"], *event))
        if not events:
            return
        try:
            with self.app.events.default_dispatcher(hostname=self.hostname) as dispatcher:
                for command_id, event_type, fields in events:
                    # A command cancelled while queued may have shown in no event before this,
                    # so this one names the task too.
                    dispatcher.send(event_type, uuid=command_id, name=EXECUTE_TASK, **fields)
        except Exception as e:  # the broker is away: Flower misses these, the ledger does not
            log.warning("outcome events not sent", extra={"error": str(e)})


def _unanswered_poll(transition: dict[str, Any]) -> bool:
    # A polling device has no worker to report its timeout: the reaper ended it.
    return bool(
        transition["state"] == State.TIMED_OUT and transition.get("detail") == POLL_TIMEOUT_DETAIL
    )

"""How a device's command ended, recorded in Redis even while Redis is briefly away.

A device worker that ran a command is the only one who knows its outcome: losing it to a
passing Redis error would leave the reaper to end the command interrupted although the device
answered. So recording is tried again until the command's lease has lapsed, after which the
reaper's word on it stands and a late record would only be refused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from tasks.analysis import MANUAL
from tasks.celery_app import ANALYZE_TASK, PUBLISH_RETRY_POLICY
from tasks.command_values import CommandChanges, CommandValues
from tasks.device_stream import StreamAppender, command_entry
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.queues import SERVER_QUEUE

log = logging.getLogger("hwq.device")

# An outcome Redis did not take is tried again after this pause, doubling up to the longest,
# until the command's lease grace has passed.
RECORD_RETRY_FIRST_S = 0.1
RECORD_RETRY_MAX_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """How a command this runtime ran ended: its state, the reason, and the reply if any."""

    state: State
    reason: str = ""
    response: dict[str, Any] | None = None

    @property
    def answered(self) -> bool:
        """Whether the device answered: the command is done or awaits its analysis."""
        return self.state in (State.DONE, State.RESPONDED)


class OutcomeRecorder:
    """Records the outcomes of one device's commands and puts their new states on its stream."""

    def __init__(
        self, live: LiveStore, celery: Celery, device: str, stream: StreamAppender
    ) -> None:
        """`celery`: where a reply awaiting its analysis is sent to be analysed."""
        self.live = live
        self.celery = celery
        self.device = device
        self._stream = stream
        # When the running command's lease lapses (monotonic), set as each command is claimed.
        self.lease_ends = 0.0

    def finish(
        self,
        command_id: str,
        state: State,
        error: str,
        context: dict[str, str],
        response: dict[str, Any] | None = None,
    ) -> Outcome | None:
        """`response`: what there is of a reply, kept with the error (a killed program's output)."""
        fields: CommandChanges = {"error": error}
        if response is not None:
            fields["response"] = response
        moved = self._record(command_id, (state,), detail=error, fields=fields, context=context)
        log.warning("command %s", state.value, extra={**context, "error": error})
        # Not moved: the reaper ended it meanwhile, and that outcome is the true one.
        return Outcome(state, error) if moved else None

    def record_reply(
        self,
        command_id: str,
        values: CommandValues,
        response: dict[str, Any],
        context: dict[str, str],
    ) -> Outcome | None:
        """Record the device's reply; a command whose analysis is not manual is sent to it."""
        analysis = values.get("analysis")
        targets = (State.RESPONDED,) if analysis else (State.RESPONDED, State.DONE)
        moved = self._record(
            command_id,
            targets,
            detail="reply received",
            fields={"response": response},
            context=context,
        )
        log.info("command responded", extra=context)
        if analysis and analysis.get("analyzer") != MANUAL:
            self.celery.send_task(
                ANALYZE_TASK,
                args=[command_id],
                queue=SERVER_QUEUE,
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
            )
        return Outcome(targets[-1], response=response) if moved else None

    def _record(
        self,
        command_id: str,
        targets: tuple[State, ...],
        *,
        detail: str,
        fields: CommandChanges,
        context: dict[str, str],
    ) -> bool:
        """Record a command's outcome, trying again while Redis is away, until its lease ends;
        whether this call moved the command.

        Giving up leaves the command dispatched, for its lease to settle; recording it
        later than that would only be refused. A try whose reply was lost but which did
        move the command makes the next one refused, which is just as good.
        """
        deadline = self.lease_ends
        pause = RECORD_RETRY_FIRST_S
        while True:
            try:
                result = self.live.move(
                    command_id, *targets, expected=(State.DISPATCHED,), detail=detail,
                    fields=fields,
                )  # fmt: skip
            except redis.RedisError as e:
                if time.monotonic() + pause > deadline:
                    log.error("outcome not recorded: Redis unreachable",
                              extra={**context, "error": str(e)})  # fmt: skip
                    raise
                log.warning("outcome not recorded yet; trying again",
                            extra={**context, "error": str(e)})  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 2, RECORD_RETRY_MAX_S)
                continue
            if not result.exists:
                log.warning("outcome not recorded: the live state is gone", extra=context)
            if result.moved and result.state:
                self._stream.append(command_entry(self.device, command_id, result.state))
            return result.moved

"""An HTTP-polling device's reply to a command it collected: checked against the command's
kind, recorded as a device worker's reply is (dispatched → responded → done, or failed), and
refused with a conflict when it comes too late (kept as a `late_reply` event) or twice."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from tasks.analysis import MANUAL
from tasks.auth import Principal
from tasks.command_values import CommandValues
from tasks.errors import CommandStateError, Forbidden, NotFound, ValidationFailed
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.poll_claims import is_poll_claim
from tasks.poll_stream import answered_entries, write_entries

log = logging.getLogger("hwq.poll")

# The fields of a reply to each kind of command (DESIGN §3); optional ones have defaults.
REPLY_FIELDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "line": (("text",), {}),
    "raw": (("data",), {}),
    "frame": (("status", "values"), {}),
    "python": (("stdout", "exit_code"), {"stderr": ""}),
}
# A reply may instead say the device could not run the command: the command ends failed.
ERROR_FIELD = "error"
# How a refusal of a reply that does not fit its command's kind begins: a fault no schema of
# the reply alone can state, since it depends on the command.
REPLY_MISFIT = "a reply to a"
# A late reply is kept as an event whose detail holds at most this much of it.
LATE_REPLY_DETAIL_CHARS = 1000


def check_device_access(principal: Principal, device: str) -> None:
    """Forbidden unless the principal is `device`'s own device token, or an admin."""
    if principal.role == "admin":
        return
    if principal.role != "device":
        raise Forbidden(f"only device {device}'s own device token (or an admin) may do this")
    if principal.device != device:
        raise Forbidden(f"this device token belongs to {principal.device}, not {device}")


def response_for_kind(kind: str, reply: dict[str, Any]) -> dict[str, Any]:
    """The command's `response` from a reply's fields; ValidationFailed naming what misfits."""
    given = {k for k, v in reply.items() if v is not None}
    required, defaults = REPLY_FIELDS.get(kind, ((), {}))
    allowed = {*required, *defaults}
    wrong = sorted(given - allowed)
    missing = [name for name in required if name not in given]
    if wrong or missing:
        shape = ", ".join((*required, *defaults))
        message = f"{REPLY_MISFIT} {kind} command has {shape}, or only {ERROR_FIELD}"
        errors: list[dict[str, object]] = [{"field": name, "message": message} for name in wrong]
        errors += [{"field": name, "message": message} for name in missing]
        raise ValidationFailed(message, errors)
    response = {**defaults, **{k: reply[k] for k in given}}
    if kind == "raw":
        # Kept as the device sent it, re-encoded so every raw response reads alike.
        response["data"] = base64.b64encode(base64.b64decode(response["data"])).decode()
    return response


class PollReplies:
    """Records polling devices' replies in the live store."""

    def __init__(
        self,
        live: LiveStore,
        analyse: Callable[[str], None],
        ended: Callable[[CommandValues, str, str, Any], None] | None = None,
    ) -> None:
        """`analyse(command_id)`: hand a reply to its registered analyzer; `ended(values, state,
        reason, response)`: told of every command a reply ended (Flower's task events)."""
        self.live = live
        self.analyse = analyse
        self.ended = ended

    def record(self, principal: Principal | None, command_id: str, reply: dict[str, Any]) -> str:
        """Record `reply` to `command_id` from `principal` (None: the caller has checked who
        may answer); returns the state the command moved to."""
        values = self.live.get(command_id)
        if values is None:
            raise NotFound(f"no command with id {command_id!r} awaits a reply")
        if principal is not None:
            check_device_access(principal, values["device"])
        context = {"device": values["device"], "command": command_id}
        error = reply.get(ERROR_FIELD)
        others = {k: v for k, v in reply.items() if k != ERROR_FIELD and v is not None}
        if error is not None and others:
            message = f"{REPLY_MISFIT} command has either {ERROR_FIELD} or its response's fields"
            raise ValidationFailed(
                message, [{"field": name, "message": message} for name in others]
            )
        response = {} if error is not None else response_for_kind(values["kind"], others)
        if values["state"] == State.DISPATCHED and is_poll_claim(values):
            moved = self._move(command_id, values, response, error)
            if moved is not None:
                log.info("reply recorded", extra={**context, "state": moved})
                self._stream(values, reply, moved)
                return moved
            values = self.live.get(command_id) or values
        self._refuse(command_id, values, reply)
        raise AssertionError("unreachable")  # _refuse always raises

    def _move(
        self,
        command_id: str,
        values: CommandValues,
        response: dict[str, Any],
        error: str | None,
    ) -> str | None:
        if error is not None:
            reason = f"the device could not run it: {error}"
            result = self.live.move(
                command_id, State.FAILED, expected=(State.DISPATCHED,), detail=reason,
                fields={"error": reason},
            )  # fmt: skip
            if result.moved and self.ended is not None:
                self.ended(values, State.FAILED, reason, None)
            return State.FAILED if result.moved else None
        analysis = values.get("analysis")
        targets = (State.RESPONDED,) if analysis else (State.RESPONDED, State.DONE)
        result = self.live.move(
            command_id, *targets, expected=(State.DISPATCHED,), detail="reply received",
            fields={"response": response},
        )  # fmt: skip
        if not result.moved:
            return None
        if self.ended is not None:
            self.ended(values, targets[-1], "", response)
        if analysis and analysis.get("analyzer") != MANUAL:
            self.analyse(command_id)
        return targets[-1]

    def _stream(self, values: CommandValues, reply: dict[str, Any], state: str) -> None:
        write_entries(self.live.redis, self.live.prefix, answered_entries(values, reply, state))

    def _refuse(self, command_id: str, values: CommandValues, reply: dict[str, Any]) -> None:
        state = values["state"]
        if state == State.TIMED_OUT:
            detail = f"late_reply: {json.dumps(reply)}"[:LATE_REPLY_DETAIL_CHARS]
            self.live.note(command_id, detail)
            self._stream(values, reply, "")
            log.info("late reply kept", extra={"device": values["device"], "command": command_id})
            raise CommandStateError(
                f"command {command_id} timed out before this reply; it is kept as a late_reply "
                "event of the command"
            )
        if state == State.DISPATCHED:
            raise CommandStateError(
                f"command {command_id} was collected by {values.get('claimed_by')}, not by "
                "polling; its worker answers it"
            )
        raise CommandStateError(f"command {command_id} is {state}; it takes no reply now")

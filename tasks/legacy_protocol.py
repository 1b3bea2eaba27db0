"""The education ancestor's protocol (DESIGN §10) over hwq's commands: one device, one command
at a time, walked through the ancestor's states by its named operations.

    0 rest ──hw_command_request──▶ 1 requested ──hw_command_retrieval──▶ 2 collected
      ▲                                                                        │
      └──server_analysis_provide── 3 responded ◀──hw_response_provide──────────┘

A request submits a `python` command (the ancestor's hw_comm was a Python program to run) with
a manual analysis, so it waits in `responded` (state 3) for the server's analysis; retrieval is
the polling devices' claim; a response is a polled reply `{stdout: hw_resp}`. The device's
state is hwq's per-device state, so the protocol and the rest of the API always agree. Which
command the answers describe is the last one requested, kept beside the device's settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks.command_record import utc_now_iso
from tasks.errors import CommandStateError, ValidationFailed
from tasks.lifecycle import DeviceState
from tasks.poll_claims import PollClaims
from tasks.poll_replies import PollReplies
from tasks.redis_replies import text
from tasks.service import HwqService

log = logging.getLogger("hwq.legacy")

STATUS_QUERY = "status_query"
REQUEST = "hw_command_request"
RETRIEVAL = "hw_command_retrieval"
RESPONSE = "hw_response_provide"
ANALYSIS = "server_analysis_provide"
COMMANDS = (STATUS_QUERY, REQUEST, RETRIEVAL, RESPONSE, ANALYSIS)
# The state each operation needs, and the field it must come with.
NEEDS_STATE = {
    REQUEST: DeviceState.REST,
    RETRIEVAL: DeviceState.REQUESTED,
    RESPONSE: DeviceState.COLLECTED,
    ANALYSIS: DeviceState.RESPONDED,
}
NEEDS_FIELD = {REQUEST: "hw_comm", RESPONSE: "hw_resp", ANALYSIS: "server_anal"}
# The ancestor's devices answered whenever they got round to it: a legacy command may take the
# longest timeout a command may have (DESIGN §3) between its retrieval and its response.
LEGACY_TIMEOUT_S = 300.0
# Two requests at once must not both find the device at rest: one holds this lock meanwhile.
REQUEST_LOCK_MS = 10_000


class LegacyRefused(CommandStateError):
    """An operation not valid in the device's current state; carries the status to answer."""

    def __init__(self, message: str, answer: dict[str, Any]) -> None:
        super().__init__(message)
        self.answer = answer


class LegacyProtocol:
    """The ancestor's operations on one hwq service."""

    def __init__(
        self,
        service: HwqService,
        replies: PollReplies,
        collected: Callable[[str, str], None],
    ) -> None:
        """`collected(command_id, device)`: told of each command a retrieval hands over."""
        self.service = service
        self.replies = replies
        self.collected = collected

    def current_key(self, device: str) -> str:
        """Where the id of the device's last requested legacy command is kept."""
        return f"{self.service.live.device_config_key(device)}:legacy"

    def status(self, device: str, command: str) -> dict[str, Any]:
        """The ancestor's answer: `{user, state, command, hw_command, hw_response,
        server_analysis, time}`."""
        state = int(self.service.live.device_status(device)["state"])
        current = self.service.redis.get(self.current_key(device))
        values: dict[str, Any] = {}
        if current is not None:
            values = self.service.get_command(text(current))
        response = values.get("response") or {}
        analysis = values.get("analysis") or {}
        return {
            "user": device,
            "state": state,
            "command": command,
            "hw_command": values.get("payload"),
            "hw_response": response.get("stdout", response.get("text")),
            "server_analysis": analysis.get("value"),
            "time": utc_now_iso(),
        }

    def perform(self, device: str, command: str, fields: dict[str, Any], user: str) -> None:
        """Do `command` for `user` (authorised already); LegacyRefused when not valid now."""
        needed = NEEDS_FIELD.get(command)
        if needed is not None and fields.get(needed) in (None, ""):
            message = f"the legacy protocol needs {needed} with {command}"
            raise ValidationFailed(message, [{"field": needed, "message": message}])
        if command == STATUS_QUERY:
            return
        if command == REQUEST:
            self._request(device, str(fields["hw_comm"]), user)
            return
        self._check_state(device, command)
        if command == RETRIEVAL:
            self._retrieve(device)
        elif command == RESPONSE:
            reply = {"stdout": str(fields["hw_resp"]), "stderr": "", "exit_code": 0}
            self.replies.record(None, self._current(device, command), reply)
        else:
            self.service.analyse(self._current(device, command), fields["server_anal"], by=user)
        log.info("legacy step", extra={"device": device, "step": command})

    def _check_state(self, device: str, command: str) -> None:
        state = int(self.service.live.device_status(device)["state"])
        if state != NEEDS_STATE[command]:
            raise self._refused(
                device, command, f"{command} needs state {int(NEEDS_STATE[command])}, not {state}"
            )

    def _refused(self, device: str, command: str, message: str) -> LegacyRefused:
        return LegacyRefused(message, self.status(device, command))

    def _request(self, device: str, program: str, user: str) -> None:
        lock = f"{self.current_key(device)}:lock"
        if not self.service.redis.set(lock, "1", nx=True, px=REQUEST_LOCK_MS):
            raise self._refused(device, REQUEST, "another hw_command_request is being made")
        try:
            self._check_state(device, REQUEST)
            submission = {
                "kind": "python",
                "payload": program,
                "timeout_s": LEGACY_TIMEOUT_S,
                "analysis": {"analyzer": "manual"},
            }
            try:
                command = self.service.submit(device, user, submission)
            except CommandStateError as e:  # the device does not allow python programs
                raise self._refused(device, REQUEST, str(e)) from None
            self.service.redis.set(self.current_key(device), command["id"])
        finally:
            self.service.redis.delete(lock)
        log.info("legacy step", extra={"device": device, "step": REQUEST,
                                       "command": command["id"]})  # fmt: skip

    def _retrieve(self, device: str) -> None:
        values = PollClaims(self.service.live, device).take_now()
        if values is None:
            # Cancelled or expired between the state check and the claim.
            raise self._refused(device, RETRIEVAL, "no command is waiting to be retrieved")
        self.service.redis.set(self.current_key(device), values["id"])
        self.collected(values["id"], device)

    def _current(self, device: str, command: str) -> str:
        current = self.service.redis.get(self.current_key(device))
        if current is None:
            raise self._refused(device, command, "no legacy command is in progress")
        return text(current)

"""Live state in Redis: commands, their event logs, waits, and the sweeps of the reaper.

Every change of a command goes through the transition script (tasks/transition_script.py);
the devices' keys, mirrored settings and presence are LiveDevices' (tasks/live_devices.py),
which this store inherits so its callers hold one object.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from tasks.celery_app import broker_key_prefix
from tasks.command_values import CommandChanges, CommandValues
from tasks.command_wait import CommandWait, longest_block_s
from tasks.command_wait import decode_hash as _decode_hash
from tasks.lifecycle import State
from tasks.live_devices import LiveDevices
from tasks.messages import execute_message
from tasks.queues import device_queue
from tasks.redis_replies import Fields, members, text, text_fields
from tasks.transition_script import (
    TransitionResult,
    TransitionScript,
    transition_args,
    transition_result,
)


class LiveStore(LiveDevices):
    """The Redis side of hwq: every read and atomic change of live command state."""

    def __init__(self, client: redis.Redis, prefix: str, lease_grace_s: float = 15.0) -> None:
        self.redis = client
        self.prefix = prefix
        # Beyond its timeout, how long a claimed command may stay silent before it counts as
        # lost; it covers opening the port and reporting the result.
        self.lease_grace_s = lease_grace_s
        self._transition = TransitionScript(client)
        # The name Redis knows the script by, for EVALSHA sent on a connection of one's own.
        self.script_sha = self._transition.sha

    # keys ---------------------------------------------------------------------------------
    def command_key(self, command_id: str) -> str:
        """The hash holding one command."""
        return f"{self.prefix}:cmd:{command_id}"

    def log_key(self, command_id: str) -> str:
        """The stream of one command's events."""
        return f"{self.prefix}:cmd:{command_id}:log"

    def wake_key(self, command_id: str) -> str:
        """The stream long-polls block on: an entry each time the command may have settled."""
        return f"{self.prefix}:cmd:{command_id}:wake"

    @property
    def transitions_key(self) -> str:
        """The stream the recorder copies into SQL."""
        return f"{self.prefix}:transitions"

    # transitions --------------------------------------------------------------------------
    def _run(self, mode: str, command_id: str, **options: Any) -> TransitionResult:
        reply = self._transition.run(transition_args(self.prefix, mode, command_id, **options))
        return transition_result(reply)

    @staticmethod
    def transition_result(reply: list[Any]) -> TransitionResult:
        """What the transition script's reply says happened."""
        return transition_result(reply)

    def create(
        self,
        values: CommandValues,
        queue_cap: int,
        enqueue: tuple[str, str] | None = None,
        *,
        reply_timeout_s: float | None = None,
        restore_as: State | None = None,
        detail: str = "accepted",
        token_check: tuple[str, str] | None = None,
    ) -> TransitionResult:
        """Store a new command as queued, unless its device already holds `queue_cap`.

        The device must have its settings mirrored (else `unknown_device`). With `enqueue` =
        (broker list key, message), the message is pushed in the same atomic step, so a
        command is never queued without its message or the reverse.

        With `reply_timeout_s` (the API's submissions), created_at is stamped from Redis's
        clock and returned in `created_at`, and the script is sent on a connection taken for it:
        a failure to connect raises `redis.ConnectionError` (nothing was sent); a reply not
        back within the timeout, or a connection lost after sending, raises `OutcomeUnknown`.
        Sending the same create again is harmless: it finds the command and changes nothing.
        `restore_as`: the state a command the ledger holds comes back in after Redis lost it.
        `token_check` = (generation key, generation): refused (`tokens_changed`) unless no
        token was revoked since the submitting one was checked at that generation.
        """
        options: dict[str, Any] = {
            "cap": queue_cap,
            "device_key": self.device_config_key(values["device"]),
        }
        if enqueue is not None:
            options["queue"], options["message"] = enqueue
        if restore_as is not None:
            options["state"] = restore_as.value
        if token_check is not None:
            options["generation_key"], options["generation"] = token_check
        if reply_timeout_s is None:
            return self._run(
                "create", values["id"], detail=detail, extra=json.dumps(options), fields=values
            )
        options["stamp"] = True
        args = transition_args(
            self.prefix,
            "create",
            values["id"],
            detail=detail,
            extra=json.dumps(options),
            fields=values,
        )
        return transition_result(self._transition.run_bounded(args, reply_timeout_s))

    def move(
        self,
        command_id: str,
        *targets: State,
        expected: tuple[State, ...] | None = None,
        detail: str = "",
        fields: CommandChanges | None = None,
    ) -> TransitionResult:
        """Move a command along allowed edges, optionally only from the `expected` states."""
        return self._run(
            "move",
            command_id,
            detail=detail,
            expected=",".join(expected) if expected else "*",
            targets=",".join(targets),
            fields=fields,
        )

    def note(self, command_id: str, detail: str) -> TransitionResult:
        """Append an event to a command's log without changing its state (`moved` if logged)."""
        return self._run("note", command_id, detail=detail)

    def broker_queue_key(self, device: str) -> str:
        """The Redis list holding the device's Celery messages."""
        return broker_key_prefix(self.prefix) + device_queue(device)

    def execute_message(self, command_id: str, device: str) -> tuple[str, str]:
        """The broker list and Celery message that make the device's worker run a command."""
        return self.broker_queue_key(device), execute_message(command_id, device_queue(device))

    def enqueue(self, command_id: str, device: str) -> None:
        """Push a command's message again; only the delivery that wins the claim runs it."""
        self.redis.lpush(*self.execute_message(command_id, device))

    def claim(self, command_id: str, worker: str, device: str | None = None) -> TransitionResult:
        """The delivery rule: queued → dispatched for exactly one delivery, or expired/cancelled.

        With `device` (the claiming worker's), a command of another device is refused and left
        as it is: the result's `other_device` names the device it belongs to.
        """
        return self._run("claim", command_id, **self._claim_options(worker, device))

    def claim_args(
        self, command_id: str, worker: str, device: str, *, lease_s: float, detail: str
    ) -> list[Any]:
        """The script arguments of a claim by `worker` for `device` with its own lease grace
        (an HTTP-polling device's claim, run on whichever client polls)."""
        changes: CommandChanges = {"claimed_by": worker}
        return transition_args(
            self.prefix,
            "claim",
            command_id,
            detail=detail,
            lease_s=lease_s,
            extra=device,
            fields=changes,
        )

    def run_script(self, args: list[Any]) -> Any:
        """Run the transition script with arguments made by one of the `*_args` methods."""
        return self._transition.run(args)

    @property
    def script_source(self) -> str:
        """The transition script, for a client of another kind (redis.asyncio) to register."""
        return self._transition.source

    def _claim_options(self, worker: str, device: str | None) -> dict[str, Any]:
        changes: CommandChanges = {"claimed_by": worker}
        return {
            "detail": f"claimed by {worker}",
            "lease_s": self.lease_grace_s,
            "extra": device or "",
            "fields": changes,
        }

    # reads --------------------------------------------------------------------------------
    def get_many(self, command_ids: list[str]) -> list[CommandValues | None]:
        """Several commands' live values in one round trip, None where Redis holds none."""
        pipe = self.redis.pipeline(transaction=False)
        for command_id in command_ids:
            pipe.hgetall(self.command_key(command_id))
        return [_decode_hash(raw) for raw in pipe.execute()]

    def get(self, command_id: str) -> CommandValues | None:
        """One command's live values, or None when Redis does not hold it."""
        return _decode_hash(self.redis.hgetall(self.command_key(command_id)))

    def state_of(self, command_id: str) -> str | None:
        """Just the state, for cheap re-checks."""
        value = self.redis.hget(self.command_key(command_id), "state")
        return text(value) if value else None

    def events(self, command_id: str) -> list[dict[str, Any]]:
        """The command's event log, oldest first."""
        entries = self.redis.xrange(self.log_key(command_id))
        return [_event(fields) for _, fields in entries or [] if fields is not None]

    def wait(
        self, command_id: str, timeout_s: float, settled: Any, expect_wake: bool = False
    ) -> CommandValues | None:
        """Block until `settled(values)` or the timeout; wakes only when the command may have.

        `expect_wake`: the command was just accepted here, so the first round may block on
        its wake stream at once (see CommandWait).
        """
        return self.command_wait(command_id, timeout_s, settled, expect_wake).run(self.redis)

    def command_wait(
        self,
        command_id: str,
        timeout_s: float,
        settled: Any,
        expect_wake: bool = False,
        client: Any = None,
    ) -> CommandWait:
        """The rounds of a long-poll on one command, each block within `client`'s socket
        timeout (this store's client unless another, such as an asyncio one, runs them)."""
        return CommandWait(
            self.wake_key(command_id),
            self.command_key(command_id),
            timeout_s,
            settled,
            longest_block_s=longest_block_s(client or self.redis),
            expect_wake=expect_wake,
        )

    # sweeps for the reaper ----------------------------------------------------------------
    def due(self, which: str, now: float | None = None) -> list[str]:
        """Command ids whose expiry (`expiries`) or lease (`leases`) has passed, by Redis time."""
        if now is None:
            seconds, micros = self.redis.time()
            now = seconds + micros / 1_000_000
        ids = self.redis.zrangebyscore(f"{self.prefix}:{which}", "-inf", now, start=0, num=500)
        return members(ids)

    def queued_ids(self, device: str) -> list[str]:
        """A device's queued command ids, oldest first."""
        return members(self.redis.zrange(self.device_set_key(device, "queued"), 0, -1))


def _event(fields: Fields) -> dict[str, Any]:
    values = text_fields(fields)
    return {"state": values["state"], "at": values["at"], "detail": values.get("detail") or None}


__all__ = ["LiveStore"]

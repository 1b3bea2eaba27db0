"""How an HTTP-polling device takes its next command: a pop from its Celery queue and the same
claim a device worker makes, so the delivery rule holds for it too (DESIGN §2, §10).

The queue stays the Celery queue `hwq.device.<name>`: whoever publishes `hwq.execute` there
reaches a polling device as it would a worker. A popped message whose claim is not won
(cancelled, expired, a duplicate, another device's) is inert and the next one is popped: a
polling device is never handed a command that is cancelled or expired.

The pops and claims are planned here and run either on a blocking client (a request with no
wait, the legacy protocol) or on redis.asyncio in the API's front door, which holds a long
poll without a thread. A message popped by a request that then dies is not lost for good: its
command stays queued, and the reaper publishes it again (Reaper.republish_orphans).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from tasks.command_record import utc_now_iso
from tasks.command_values import CommandValues
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.messages import command_of
from tasks.poll_stream import handed_out_entries, write_entries, write_entries_async
from tasks.transition_script import TransitionResult

log = logging.getLogger("hwq.poll")

# `claimed_by` of a command a polling device collected; the reaper ends such a command
# timed_out when its device stays silent past timeout_s (no worker to have vanished).
POLL_CLAIMANT_PREFIX = "http-poll:"
# A polling device counts as present this long after its poll's wait has ended.
PRESENCE_GRACE_S = 15.0
# The detail of the event that ends a polled command nobody answered in time.
POLL_TIMEOUT_DETAIL = "no reply from the polling device within timeout_s"
# The longest `wait` of one poll (DESIGN §10).
MAX_POLL_WAIT_S = 60.0


def poll_claimant(device: str) -> str:
    """The `claimed_by` of a command collected by polling device `device`."""
    return POLL_CLAIMANT_PREFIX + device


def is_poll_claim(values: CommandValues) -> bool:
    """Whether a polling device (not a device worker) collected this command."""
    return str(values.get("claimed_by") or "").startswith(POLL_CLAIMANT_PREFIX)


@dataclass(frozen=True)
class PollOutcome:
    """What one popped message came to: a command to hand out, or nothing (inert)."""

    values: CommandValues | None = None
    # A message of another device's queued command, to publish again to that device's queue.
    send_home_to: str | None = None


class PollClaims:
    """The pops and claims of one device's polls, for a blocking or an asyncio client."""

    def __init__(self, live: LiveStore, device: str) -> None:
        self.live = live
        self.device = device
        self.queue_key = live.broker_queue_key(device)
        # The command this poll claimed, once its claim is won (take_async).
        self.claimed: CommandValues | None = None

    def claim_args(self, command_id: str) -> list[Any]:
        """The transition script's arguments that claim `command_id` for this device."""
        # No grace beyond timeout_s: a polling device is answered or not within it, and its
        # lease lapsing is what ends the command timed_out (Reaper.end_lapsed_leases).
        return self.live.claim_args(
            command_id, poll_claimant(self.device), self.device, lease_s=0.0,
            detail=f"collected by polling device {self.device}",
        )  # fmt: skip

    def outcome(self, command_id: str, claim: TransitionResult) -> PollOutcome:
        """What a claim's result means for the poll."""
        context = {"device": self.device, "command": command_id}
        if claim.other_device is not None:
            log.warning("delivery refused: the command is another device's",
                        extra={**context, "owner": claim.other_device})  # fmt: skip
            owner = claim.other_device if claim.state == State.QUEUED else None
            return PollOutcome(send_home_to=owner or None)
        if not claim.moved or claim.state != State.DISPATCHED or claim.values is None:
            log.info("delivery inert", extra={**context, "state": claim.state})
            return PollOutcome()
        log.info("command collected", extra=context)
        return PollOutcome(values=claim.values)

    def presence_ttl_s(self, wait_s: float) -> int:
        """How long a poll with this wait keeps the device present."""
        return int(wait_s + PRESENCE_GRACE_S) + 1

    def queue_presence(self, pipe: Any, wait_s: float) -> None:
        """Mark the device present on a pipeline (blocking or asyncio)."""
        base = self.live.device_config_key(self.device)
        ttl = self.presence_ttl_s(wait_s)
        pipe.set(f"{base}:alive", "1", ex=ttl)
        pipe.set(f"{base}:presence", "online", ex=ttl)
        pipe.set(f"{base}:last_seen", utc_now_iso())

    # blocking ------------------------------------------------------------------------------
    def take_now(self) -> CommandValues | None:
        """The next command if one is queued now (never waits), on the store's own client."""
        client = self.live.redis
        pipe = client.pipeline(transaction=False)
        self.queue_presence(pipe, 0.0)
        pipe.execute()
        while True:
            message = client.rpop(self.queue_key)
            if message is None:
                return None
            command_id = command_of(bytes(message))  # type: ignore[arg-type]
            if command_id is None:
                log.warning("message dropped: not a command", extra={"device": self.device})
                continue
            reply = self.live.run_script(self.claim_args(command_id))
            outcome = self.outcome(command_id, LiveStore.transition_result(reply))
            if outcome.send_home_to:
                self.live.enqueue(command_id, outcome.send_home_to)
            if outcome.values is not None:
                write_entries(client, self.live.prefix, handed_out_entries(outcome.values))
                return outcome.values

    # asyncio -------------------------------------------------------------------------------
    async def take_async(self, client: Any, wait_s: float, longest_block_s: float) -> Any:
        """The next command within `wait_s` seconds (None if none came), holding no thread.

        Each blocking pop is cut to `longest_block_s` (within the connection's socket timeout).
        """
        pipe = client.pipeline(transaction=False)
        self.queue_presence(pipe, wait_s)
        await pipe.execute()
        script = client.register_script(self.live.script_source)
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                message = await client.rpop(self.queue_key)
            else:
                popped = await client.brpop(
                    [self.queue_key], timeout=max(0.01, min(remaining, longest_block_s))
                )
                message = popped[1] if popped else None
            if message is None:
                if remaining <= 0:
                    return None
                continue
            command_id = command_of(bytes(message))
            if command_id is None:
                log.warning("message dropped: not a command", extra={"device": self.device})
                continue
            # A claim that was sent must be known to have been won or not, even when the
            # client leaves meanwhile: a won one is put back (put_back) rather than stranded.
            claiming = asyncio.ensure_future(script(args=self.claim_args(command_id)))
            try:
                reply = await asyncio.shield(claiming)
            except asyncio.CancelledError:
                self._note_claim(command_id, await claiming)
                raise
            outcome = self._note_claim(command_id, reply)
            if outcome.send_home_to:
                await client.lpush(*self.live.execute_message(command_id, outcome.send_home_to))
            if outcome.values is not None:
                entries = handed_out_entries(outcome.values)
                await write_entries_async(client, self.live.prefix, entries)
                return outcome.values

    def _note_claim(self, command_id: str, reply: Any) -> PollOutcome:
        outcome = self.outcome(command_id, LiveStore.transition_result(reply))
        if outcome.values is not None:
            self.claimed = outcome.values
        return outcome

    def put_back(self, command_id: str) -> bool:
        """Queue again a command this poll claimed but could not hand over (its client left):
        it goes back to the front of the device's queue. Whether it was put back."""
        result = self.live.move(
            command_id,
            State.QUEUED,
            expected=(State.DISPATCHED,),
            detail="the polling device left before it was handed over; queued again",
        )
        if result.moved:
            _, message = self.live.execute_message(command_id, self.device)
            # The end the pops take from: it is next, as it was.
            self.live.redis.rpush(self.queue_key, message)
            log.warning("command put back", extra={"device": self.device, "command": command_id})
        return result.moved

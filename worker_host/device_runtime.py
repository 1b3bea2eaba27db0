"""The device runtime: claims a command, talks to the port, reports the outcome.

The port and its settings are `device_port.py`'s, recording the outcome `command_outcome.py`'s;
this module keeps the order a command goes through between them, which is what makes it safe:
claim, settle the port, re-check a claim that has grown old, write, record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery

from tasks.command_values import CommandValues
from tasks.device_stream import StreamAppender, command_entry
from tasks.errors import DeviceError, ReplyTimeout
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.transition_script import TransitionResult
from worker_host.command_outcome import Outcome, OutcomeRecorder
from worker_host.device_port import DevicePort
from worker_host.program_command import ProgramPolicy, ProgramTimedOut
from worker_host.transport import Transport

__all__ = ["DeviceRuntime", "Outcome"]

log = logging.getLogger("hwq.device")

# Only the reaper moves a dispatched command, and only once its lease has lapsed: at least
# `lease_grace_s` after the claim. Within this share of that, the claim is still the last
# word on the command when bytes go out; past it, the state is read once more. (Redis losing
# its data meanwhile shows when the reply is recorded: the command is gone, and the ledger
# ends it interrupted, outcome unknown.)
RECHECK_AFTER_SHARE_OF_LEASE = 0.5
# Commands this worker wrote to its port, the newest this many: a command restored from the
# ledger after Redis lost its data is checked against them before it is sent.
MAX_REMEMBERED_SENT = 10_000


class DeviceRuntime:
    """Runs one device's commands, one at a time, keeping its port open between them."""

    def __init__(
        self,
        live: LiveStore,
        celery: Celery,
        device: str,
        node_name: str,
        overrides: dict[str, Any] | None = None,
        transport_for: Callable[[dict[str, Any]], Transport] | None = None,
        programs: ProgramPolicy | None = None,
    ) -> None:
        """`transport_for`: how to reach the device its settings describe (default: the serial
        port its address names); `programs`: whether and how `python` commands run here."""
        self.live = live
        self.celery = celery
        self.device = device
        self.node_name = node_name
        self._programs = programs or ProgramPolicy()
        # The device's live stream (DESIGN §9), written in batches off the command path.
        self.stream = StreamAppender(live.redis, live.prefix)
        self.port = DevicePort(live, device, self.stream, overrides, transport_for)
        self.outcomes = OutcomeRecorder(live, celery, device, self.stream)
        # One thread runs the commands, but a redelivery must never race the port.
        self._lock = threading.Lock()
        self._recheck_after_s = live.lease_grace_s * RECHECK_AFTER_SHARE_OF_LEASE
        self._sent: OrderedDict[str, None] = OrderedDict()

    def _check_programs_allowed(self) -> None:
        try:
            self._programs.check_allowed(self.device, self.port.config())
        except DeviceError:
            # The settings may have changed within the cache's life (options.python just set):
            # a refusal is decided on a fresh read, never on a cached one.
            self.port.forget_config()
            self._programs.check_allowed(self.device, self.port.config())

    def start_reading(self) -> None:
        """Open the port now, so what the device says before the first command is streamed,
        and drain it; a port that will not open is tried again by the first command."""
        with self._lock:
            try:
                self.port.ready(current=None).settle()
            except (DeviceError, redis.RedisError) as e:
                log.warning("port not open yet", extra={"device": self.device, "error": str(e)})

    def execute(
        self, command_id: str, on_dispatched: Callable[[], None] | None = None
    ) -> Outcome | None:
        """Run a command if this delivery wins its claim; any other delivery does nothing.

        `on_dispatched` is called once the claim is won, before the port is used. Returns how
        the command ended, or None when this delivery did not run it.
        """
        # The command's stream entries go out in one batch once its outcome is recorded.
        with self._lock, self.stream.holding():
            not_ready = self._settle_before_claim(command_id)
            claimed_at = time.monotonic()
            claim = self.live.claim(command_id, self.node_name, self.device)
            return self.run_claimed(command_id, claim, claimed_at, not_ready, on_dispatched)

    def _settle_before_claim(self, command_id: str) -> DeviceError | None:
        """Drain a dirty port while the command is still queued; the error to fail it with.

        Draining may take seconds: meanwhile the command can still be cancelled or expire,
        and its lease, which starts at the claim, does not run out.
        """
        try:
            exchange = self.port.ready(current=None)
            if exchange.is_dirty and self.live.state_of(command_id) == State.QUEUED:
                exchange.settle()
        except DeviceError as e:
            return e
        return None

    def run_claimed(
        self,
        command_id: str,
        claim: TransitionResult,
        claimed_at: float,
        not_ready: DeviceError | None = None,
        on_dispatched: Callable[[], None] | None = None,
    ) -> Outcome | None:
        """Run a command whose claim has returned `claim`, sent no earlier than `claimed_at`.

        `not_ready`: why the device cannot take it (its port would not open or come clean).
        """
        context = {"device": self.device, "command": command_id}
        if claim.other_device is not None:
            self._send_home(command_id, claim, context)
            return None
        if not claim.moved:
            log.info("delivery inert", extra={**context, "state": claim.state})
            return None
        if claim.state != State.DISPATCHED:
            log.info("command ended before dispatch", extra={**context, "state": claim.state})
            return None
        values = claim.values
        if values is None:
            return None
        self.stream.append(command_entry(self.device, command_id, State.DISPATCHED))
        # Past this, the reaper settles the command and recording its outcome is refused.
        self.outcomes.lease_ends = claimed_at + float(values["timeout_s"]) + self.live.lease_grace_s
        if values.get("restored") and self._sent_before(command_id, values):
            return None
        if on_dispatched is not None:
            on_dispatched()
        try:
            if values["kind"] == "python":
                self._check_programs_allowed()
            if not_ready is not None:
                raise not_ready
            exchange = self.port.ready(current=command_id)
            # A late reply owed by a timed-out command is waited out before the re-check, so
            # the re-check is the last thing that happens before bytes go out.
            exchange.settle()
            # The claim itself checked state, cancel flag and deadline atomically, and a
            # dispatched command can be neither cancelled nor expired; when opening the port
            # or a late reply took long enough for its lease to be near lapsing, look again.
            if time.monotonic() - claimed_at > self._recheck_after_s and (
                self.live.state_of(command_id) != State.DISPATCHED
            ):
                log.warning("claim lost before writing", extra=context)
                return None
            self._remember_sent(command_id)
            if values["kind"] == "python":
                response = self._programs.run(self.device, exchange, str(values["payload"]),
                                              float(values["timeout_s"]), command_id)  # fmt: skip
            else:
                response = exchange.run(
                    values["kind"],
                    values["payload"],
                    float(values["timeout_s"]),
                    values.get("read"),
                    command_id=command_id,
                )
        except ProgramTimedOut as e:
            return self.outcomes.finish(command_id, State.TIMED_OUT, str(e), context, e.result)
        except ReplyTimeout as e:
            outcome = self.outcomes.finish(command_id, State.TIMED_OUT, str(e), context)
            self.port.settle_after_timeout(context)
            return outcome
        except DeviceError as e:
            return self.outcomes.finish(command_id, State.FAILED, str(e), context)
        except Exception as e:  # a bug must still end the command, never strand it
            log.exception("command crashed the runtime", extra=context)
            return self.outcomes.finish(
                command_id, State.FAILED, f"{type(e).__name__}: {e}", context
            )
        return self.outcomes.record_reply(command_id, values, response, context)

    def _send_home(self, command_id: str, claim: TransitionResult, context: dict[str, str]) -> None:
        """A message of another device's command reached this worker: it stays that device's.

        The claim refused it and changed nothing. While the command is queued, its message is
        published again to its own device's queue, so it is not lost should this have been
        its only one; a duplicate there is inert, as any second delivery is.
        """
        owner = claim.other_device or ""
        log.warning("delivery refused: the command is another device's",
                    extra={**context, "owner": owner, "state": claim.state})  # fmt: skip
        if claim.state == State.QUEUED and owner:
            self.live.enqueue(command_id, owner)

    def _remember_sent(self, command_id: str) -> None:
        self._sent[command_id] = None
        while len(self._sent) > MAX_REMEMBERED_SENT:
            self._sent.popitem(last=False)

    def _sent_before(self, command_id: str, values: CommandValues) -> bool:
        """A command restored after Redis lost its data that this worker already sent.

        The ledger trailed Redis when it was lost, so it still showed the command queued.
        Not idempotent: it ends interrupted rather than reaching the device twice.
        """
        if command_id not in self._sent or values.get("idempotent"):
            return False
        error = "sent to the device before Redis lost its data; not sent again"
        context = {"device": self.device, "command": command_id}
        self.outcomes.finish(command_id, State.INTERRUPTED, error, context)
        return True

    def close(self) -> None:
        """Close the port and write what is left of the stream."""
        self.port.close()
        self.stream.close()

    def probe_port(self) -> DeviceError | None:
        """Open the port if it is closed and check it is still there; why not, or None.

        While a command runs the port is in use and counts as there: should it vanish, the
        command fails and the next probe sees it.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self.port.probe()
        finally:
            self._lock.release()

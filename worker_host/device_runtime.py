"""The device runtime: claims a command, talks to the port, reports the outcome."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import redis
from celery import Celery

from tasks.analysis import MANUAL
from tasks.celery_app import ANALYZE_TASK, PUBLISH_RETRY_POLICY
from tasks.errors import DeviceError, ReplyTimeout
from tasks.lifecycle import State
from tasks.live_store import LiveStore, TransitionResult
from tasks.queues import SERVER_QUEUE
from worker_host.exchange import DeviceExchange
from worker_host.transport import SerialTransport

log = logging.getLogger("hwq.device")

# The device's settings are read again after this long, so a PATCH reaches an idle worker
# within it without costing a Redis round trip on every command.
CONFIG_CACHE_S = 2.0
# Only the reaper moves a dispatched command, and only once its lease has lapsed: at least
# `lease_grace_s` after the claim. Within this share of that, the claim is still the last
# word on the command when bytes go out; past it, the state is read once more. (Redis losing
# its data meanwhile shows when the reply is recorded: the command is gone, and the ledger
# ends it interrupted, outcome unknown.)
RECHECK_AFTER_SHARE_OF_LEASE = 0.5
# An outcome Redis did not take is tried again after this pause, doubling up to the longest,
# until the command's lease grace has passed.
RECORD_RETRY_FIRST_S = 0.1
RECORD_RETRY_MAX_S = 1.0
# Commands this worker wrote to its port, the newest this many: a command restored from the
# ledger after Redis lost its data is checked against them before it is sent.
MAX_REMEMBERED_SENT = 10_000
# Settings whose change means the port must be opened anew.
_PORT_SETTINGS = ("address", "baudrate")


class DeviceRuntime:
    """Runs one device's commands, one at a time, keeping its port open between them."""

    def __init__(
        self,
        live: LiveStore,
        celery: Celery,
        device: str,
        node_name: str,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.live = live
        self.celery = celery
        self.device = device
        self.node_name = node_name
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._exchange: DeviceExchange | None = None
        self._port_settings: tuple[Any, ...] | None = None
        self._config: dict[str, Any] | None = None
        self._config_read_at = 0.0
        # One thread runs the commands, but a redelivery must never race the port.
        self._lock = threading.Lock()
        self._recheck_after_s = live.lease_grace_s * RECHECK_AFTER_SHARE_OF_LEASE
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._lease_ends = 0.0

    def _device_config(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._config is not None and now - self._config_read_at < CONFIG_CACHE_S:
            return self._config
        config = self.live.device_config(self.device) or {"name": self.device}
        config.update(self.overrides)
        if not config.get("address"):
            raise DeviceError(f"device {self.device} has no address; register it with one")
        self._config, self._config_read_at = config, now
        return config

    def _exchange_for(self, config: dict[str, Any]) -> DeviceExchange:
        settings = tuple(config.get(k) for k in _PORT_SETTINGS)
        if self._exchange is None or settings != self._port_settings:
            if self._exchange is not None:
                self._exchange.transport.close()
            transport = SerialTransport(str(config["address"]), int(config.get("baudrate") or 0))
            self._exchange = DeviceExchange(transport, on_noise=self._noise)
            self._port_settings = settings
        return self._exchange

    def _noise(self, data: bytes) -> None:
        self.live.append_rx(self.device, data)

    def execute(self, command_id: str) -> None:
        """Run a command if this delivery wins its claim; any other delivery does nothing."""
        with self._lock:
            claimed_at = time.monotonic()
            claim = self.live.claim(command_id, self.node_name)
            self.run_claimed(command_id, claim, claimed_at)

    def run_claimed(self, command_id: str, claim: TransitionResult, claimed_at: float) -> None:
        """Run a command whose claim has returned `claim`, sent no earlier than `claimed_at`."""
        context = {"device": self.device, "command": command_id}
        if not claim.moved:
            log.info("delivery inert", extra={**context, "state": claim.state})
            return
        if claim.state != State.DISPATCHED:
            log.info("command ended before dispatch", extra={**context, "state": claim.state})
            return
        values = claim.values
        if values is None:
            return
        # Past this, the reaper settles the command and recording its outcome is refused.
        self._lease_ends = claimed_at + float(values["timeout_s"]) + self.live.lease_grace_s
        if values.get("restored") and self._sent_before(command_id, values):
            return
        try:
            exchange = self._exchange_for(self._device_config())
            exchange.check_ready()
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
                return
            self._remember_sent(command_id)
            response = exchange.run(
                values["kind"], values["payload"], float(values["timeout_s"]), values.get("read")
            )
        except ReplyTimeout as e:
            self._finish(command_id, State.TIMED_OUT, str(e), context)
        except DeviceError as e:
            self._finish(command_id, State.FAILED, str(e), context)
        except Exception as e:  # a bug must still end the command, never strand it
            log.exception("command crashed the runtime", extra=context)
            self._finish(command_id, State.FAILED, f"{type(e).__name__}: {e}", context)
        else:
            self._record_reply(command_id, values, response, context)

    def _remember_sent(self, command_id: str) -> None:
        self._sent[command_id] = None
        while len(self._sent) > MAX_REMEMBERED_SENT:
            self._sent.popitem(last=False)

    def _sent_before(self, command_id: str, values: dict[str, Any]) -> bool:
        """A command restored after Redis lost its data that this worker already sent.

        The ledger trailed Redis when it was lost, so it still showed the command queued.
        Not idempotent: it ends interrupted rather than reaching the device twice.
        """
        if command_id not in self._sent or values.get("idempotent"):
            return False
        error = "sent to the device before Redis lost its data; not sent again"
        self._finish(command_id, State.INTERRUPTED, error, {"device": self.device,
                                                             "command": command_id})  # fmt: skip
        return True

    def _finish(self, command_id: str, state: State, error: str, context: dict[str, str]) -> None:
        self._record(command_id, (state,), detail=error, fields={"error": error}, context=context)
        log.warning("command %s", state.value, extra={**context, "error": error})

    def _record(
        self,
        command_id: str,
        targets: tuple[State, ...],
        *,
        detail: str,
        fields: dict[str, Any],
        context: dict[str, str],
    ) -> None:
        """Record a command's outcome, trying again while Redis is away, until its lease ends.

        Giving up leaves the command dispatched, for its lease to settle; recording it
        later than that would only be refused. A try whose reply was lost but which did
        move the command makes the next one refused, which is just as good.
        """
        deadline = self._lease_ends
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
            return

    def _record_reply(
        self,
        command_id: str,
        values: dict[str, Any],
        response: dict[str, Any],
        context: dict[str, str],
    ) -> None:
        analysis = values.get("analysis")
        targets = (State.RESPONDED,) if analysis else (State.RESPONDED, State.DONE)
        self._record(
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

    def close(self) -> None:
        """Close the port."""
        if self._exchange is not None:
            self._exchange.transport.close()

"""The device runtime: claims a command, talks to the port, reports the outcome."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
# Settings whose change means the port must be opened anew.
_PORT_SETTINGS = ("address", "baudrate")


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

    def execute(
        self, command_id: str, on_dispatched: Callable[[], None] | None = None
    ) -> Outcome | None:
        """Run a command if this delivery wins its claim; any other delivery does nothing.

        `on_dispatched` is called once the claim is won, before the port is used. Returns how
        the command ended, or None when this delivery did not run it.
        """
        with self._lock:
            claimed_at = time.monotonic()
            claim = self.live.claim(command_id, self.node_name, self.device)
            return self.run_claimed(command_id, claim, claimed_at, on_dispatched)

    def run_claimed(
        self,
        command_id: str,
        claim: TransitionResult,
        claimed_at: float,
        on_dispatched: Callable[[], None] | None = None,
    ) -> Outcome | None:
        """Run a command whose claim has returned `claim`, sent no earlier than `claimed_at`."""
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
        if on_dispatched is not None:
            on_dispatched()
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
                return None
            response = exchange.run(
                values["kind"], values["payload"], float(values["timeout_s"]), values.get("read")
            )
        except ReplyTimeout as e:
            return self._finish(command_id, State.TIMED_OUT, str(e), context)
        except DeviceError as e:
            return self._finish(command_id, State.FAILED, str(e), context)
        except Exception as e:  # a bug must still end the command, never strand it
            log.exception("command crashed the runtime", extra=context)
            return self._finish(command_id, State.FAILED, f"{type(e).__name__}: {e}", context)
        return self._record_reply(command_id, values, response, context)

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

    def _finish(
        self, command_id: str, state: State, error: str, context: dict[str, str]
    ) -> Outcome | None:
        result = self.live.move(
            command_id, state, expected=(State.DISPATCHED,), detail=error, fields={"error": error}
        )
        log.warning("command %s", state.value, extra={**context, "error": error})
        # Not moved: the reaper ended it meanwhile, and that outcome is the true one.
        return Outcome(state, error) if result.moved else None

    def _record_reply(
        self,
        command_id: str,
        values: dict[str, Any],
        response: dict[str, Any],
        context: dict[str, str],
    ) -> Outcome | None:
        analysis = values.get("analysis")
        targets = (State.RESPONDED,) if analysis else (State.RESPONDED, State.DONE)
        result = self.live.move(
            command_id,
            *targets,
            expected=(State.DISPATCHED,),
            detail="reply received",
            fields={"response": response},
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
        return Outcome(targets[-1], response=response) if result.moved else None

    def close(self) -> None:
        """Close the port."""
        if self._exchange is not None:
            self._exchange.transport.close()

"""The device runtime: claims a command, talks to the port, reports the outcome."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery

from tasks.analysis import MANUAL
from tasks.celery_app import ANALYZE_TASK, PUBLISH_RETRY_POLICY
from tasks.command_values import CommandChanges, CommandValues
from tasks.device_options import SERIAL_LINE_OPTIONS, DeviceProfile, device_profile, serial_line
from tasks.device_stream import StreamAppender, StreamEntry, command_entry, presence_entry
from tasks.errors import DeviceError, ReplyTimeout
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.queues import SERVER_QUEUE
from tasks.redis_replies import members
from tasks.transition_script import TransitionResult
from worker_host.exchange import DeviceExchange
from worker_host.port_address import PortAddress
from worker_host.port_reader import PortReader
from worker_host.program_command import ProgramPolicy, ProgramTimedOut
from worker_host.transport import PortsLister, SerialTransport, Transport

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
_PORT_SETTINGS = ("transport", "address", "baudrate")
# A late reply is kept as an event whose detail holds at most this much of it.
LATE_REPLY_DETAIL_CHARS = 1000


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
        transport_for: Callable[[dict[str, Any]], Transport] | None = None,
        programs: ProgramPolicy | None = None,
    ) -> None:
        """`transport_for`: how to reach the device its settings describe (default: the serial
        port its address names); `programs`: whether and how `python` commands run here."""
        self.live = live
        self.celery = celery
        self.device = device
        self.node_name = node_name
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._transport_for = transport_for or serial_transport
        self._programs = programs or ProgramPolicy()
        self._exchange: DeviceExchange | None = None
        self._reader: PortReader | None = None
        # The device's live stream (DESIGN §9), written in batches off the command path.
        self.stream = StreamAppender(live.redis, live.prefix)
        self._port_settings: tuple[Any, ...] | None = None
        self._config: dict[str, Any] | None = None
        self._config_read_at = 0.0
        self._profiled_config: dict[str, Any] | None = None
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

    def _check_programs_allowed(self) -> None:
        try:
            self._programs.check_allowed(self.device, self._device_config())
        except DeviceError:
            # The settings may have changed within the cache's life (options.python just set):
            # a refusal is decided on a fresh read, never on a cached one.
            self._config = None
            self._programs.check_allowed(self.device, self._device_config())

    def _exchange_for(self, config: dict[str, Any], current: str | None) -> DeviceExchange:
        settings = (*(config.get(k) for k in _PORT_SETTINGS), _line_settings(config))
        if self._exchange is None or settings != self._port_settings:
            if self._reader is not None:
                self._reader.stop()
            reader = PortReader(
                self._transport_for(config),
                on_rx=lambda chunk: self._streamed("rx", chunk),
                on_presence=lambda presence: self.stream.append(
                    presence_entry(self.device, presence)
                ),
                name=f"hwq-port-{self.device}",
            )
            self._reader = reader
            exchange = DeviceExchange(
                reader,
                self._noise,
                device=self.device,
                on_late_reply=self._late_reply,
                on_tx=lambda chunk, command_id: self._streamed("tx", chunk, command_id),
                on_idle=reader.discard_idle,
            )
            # Kept only once this has been read, so a Redis error means it is read next time.
            self._expect_replies_left_in_flight(exchange, current)
            self._exchange, self._port_settings = exchange, settings
            self._profiled_config = None
        if config is not self._profiled_config:
            self._exchange.profile = self._profile(config)
            self._profiled_config = config
        return self._exchange

    def _profile(self, config: dict[str, Any]) -> DeviceProfile:
        try:
            return device_profile(config)
        except ValueError as e:
            raise DeviceError(f"device {self.device} has a bad setting: {e}") from None

    def _ready_exchange(self, current: str | None) -> DeviceExchange:
        """The exchange for the device's current settings, its port open."""
        exchange = self._exchange_for(self._device_config(), current)
        exchange.check_ready()
        return exchange

    def _expect_replies_left_in_flight(self, exchange: DeviceExchange, current: str | None) -> None:
        """Make the first command wait for a reply owed to a command a previous worker of this
        device had in flight when it died: the device may still send it."""
        ids = self.live.redis.smembers(self.live.device_set_key(self.device, "inflight"))
        left = [
            values
            for values in self.live.get_many(sorted(members(ids)))
            if values is not None and values["id"] != current
            if values.get("state") == State.DISPATCHED and values.get("dispatched_at")
        ]
        if not left:
            return
        last = max(left, key=lambda values: str(values["dispatched_at"]))
        deadline = datetime.fromisoformat(str(last["dispatched_at"])).timestamp() + float(
            last.get("timeout_s") or 0
        )
        seconds_left = deadline - datetime.now(UTC).timestamp()
        exchange.expect_late_reply(last["id"], str(last["kind"]), last.get("read"), seconds_left)
        log.info("waiting out a command left in flight",
                 extra={"device": self.device, "command": last["id"]})  # fmt: skip

    def _streamed(self, kind: str, chunk: bytes, command_id: str = "") -> None:
        self.stream.append(StreamEntry(self.device, kind, chunk, command_id))

    def _noise(self, data: bytes) -> None:
        # Already on the device's stream, as every chunk read is; it answers no command.
        log.debug("noise drained", extra={"device": self.device, "bytes": len(data)})

    def start_reading(self) -> None:
        """Open the port now, so what the device says before the first command is streamed,
        and drain it; a port that will not open is tried again by the first command."""
        with self._lock:
            try:
                self._ready_exchange(current=None).settle()
            except (DeviceError, redis.RedisError) as e:
                log.warning("port not open yet", extra={"device": self.device, "error": str(e)})

    def _late_reply(self, command_id: str, response: dict[str, object]) -> None:
        detail = f"late_reply: {json.dumps(response)}"[:LATE_REPLY_DETAIL_CHARS]
        self.live.note(command_id, detail)
        log.info("late reply kept", extra={"device": self.device, "command": command_id})

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
            exchange = self._ready_exchange(current=None)
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
        self._lease_ends = claimed_at + float(values["timeout_s"]) + self.live.lease_grace_s
        if values.get("restored") and self._sent_before(command_id, values):
            return None
        if on_dispatched is not None:
            on_dispatched()
        try:
            if values["kind"] == "python":
                self._check_programs_allowed()
            if not_ready is not None:
                raise not_ready
            exchange = self._ready_exchange(current=command_id)
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
            return self._finish(command_id, State.TIMED_OUT, str(e), context, e.result)
        except ReplyTimeout as e:
            outcome = self._finish(command_id, State.TIMED_OUT, str(e), context)
            self._settle_after_timeout(context)
            return outcome
        except DeviceError as e:
            return self._finish(command_id, State.FAILED, str(e), context)
        except Exception as e:  # a bug must still end the command, never strand it
            log.exception("command crashed the runtime", extra=context)
            return self._finish(command_id, State.FAILED, f"{type(e).__name__}: {e}", context)
        return self._record_reply(command_id, values, response, context)

    def _settle_after_timeout(self, context: dict[str, str]) -> None:
        """Drain the port now, not at the next command: a late reply is kept with its command
        as it comes, and the device's reset sequence goes out at once."""
        if self._exchange is None:
            return
        try:
            self._exchange.settle()
        except DeviceError as e:  # still dirty: the next command drains it again
            log.warning("port not clean after a timeout", extra={**context, "error": str(e)})

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
        self._finish(command_id, State.INTERRUPTED, error, {"device": self.device,
                                                             "command": command_id})  # fmt: skip
        return True

    def _finish(
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
            if result.moved and result.state:
                self.stream.append(command_entry(self.device, command_id, result.state))
            return result.moved

    def _record_reply(
        self,
        command_id: str,
        values: CommandValues,
        response: dict[str, Any],
        context: dict[str, str],
    ) -> Outcome | None:
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

    def close(self) -> None:
        """Close the port and write what is left of the stream."""
        if self._reader is not None:
            self._reader.stop()
        self.stream.close()

    def probe_port(self) -> DeviceError | None:
        """Open the port if it is closed and check it is still there; why not, or None.

        While a command runs the port is in use and counts as there: should it vanish, the
        command fails and the next probe sees it.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            exchange = self._exchange
            if exchange is None or not exchange.transport.is_open:
                # Only opening needs the settings; an open port is looked at where it is.
                exchange = self._ready_exchange(current=None)
                # The next command reads the settings afresh, as it would without the probe:
                # a change made since reaches it at once.
                self._config_read_at = 0.0
            transport = exchange.transport
            # The reader stands in front of the port; whether the adapter is gone is the port's.
            if isinstance(transport, PortReader):
                transport = transport.transport
            lost = transport.lost() if isinstance(transport, SerialTransport) else None
            return DeviceError(lost) if lost else None
        except DeviceError as e:
            return e
        finally:
            self._lock.release()


def serial_transport(config: dict[str, Any], ports_lister: PortsLister | None = None) -> Transport:
    """The serial port a device's settings name, at its baud rate; a `usb:` address is looked
    up among `ports_lister()` (default: pyserial's list)."""
    try:
        address = PortAddress.parse(str(config["address"]))
    except ValueError as e:
        raise DeviceError(f"device {config.get('name')} has a bad address: {e}") from None
    try:
        line = serial_line(config.get("options") or {})
    except ValueError as e:
        raise DeviceError(f"device {config.get('name')} has a bad serial setting: {e}") from None
    return SerialTransport(address, int(config.get("baudrate") or 0), line, ports_lister)


def _line_settings(config: dict[str, Any]) -> object:
    """The options that decide how the port is opened: a change reopens it."""
    options = config.get("options") or {}
    return tuple(options.get(k) for k in SERIAL_LINE_OPTIONS)

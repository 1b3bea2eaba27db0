"""A device worker's port and the settings it is opened with, kept open between commands.

The settings are cached briefly, so a command costs no Redis round trip for them, and the port
is opened anew only when a setting that decides how it is opened has changed. What the port
says and is sent goes to the device's stream as it happens; a reply that comes after its
command has ended is kept with that command.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tasks.device_options import SERIAL_LINE_OPTIONS, DeviceProfile, device_profile, serial_line
from tasks.device_stream import StreamAppender, StreamEntry, presence_entry
from tasks.errors import DeviceError
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from tasks.redis_replies import members
from worker_host.exchange import DeviceExchange
from worker_host.port_address import PortAddress
from worker_host.port_reader import PortReader
from worker_host.transport import PortsLister, SerialTransport, Transport

log = logging.getLogger("hwq.device")

# The device's settings are read again after this long, so a PATCH reaches an idle worker
# within it without costing a Redis round trip on every command.
CONFIG_CACHE_S = 2.0
# Settings whose change means the port must be opened anew.
_PORT_SETTINGS = ("transport", "address", "baudrate")
# A late reply is kept as an event whose detail holds at most this much of it.
LATE_REPLY_DETAIL_CHARS = 1000


class DevicePort:
    """One device's settings, read through a short cache, and the port they open."""

    def __init__(
        self,
        live: LiveStore,
        device: str,
        stream: StreamAppender,
        overrides: dict[str, Any] | None = None,
        transport_for: Callable[[dict[str, Any]], Transport] | None = None,
    ) -> None:
        """`stream`: where the port's traffic and presence go; `transport_for`: how to reach
        the device its settings describe (default: the serial port its address names)."""
        self.live = live
        self.device = device
        self.overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        self._stream = stream
        self._transport_for = transport_for or serial_transport
        self._exchange: DeviceExchange | None = None
        self._reader: PortReader | None = None
        self._port_settings: tuple[Any, ...] | None = None
        self._config: dict[str, Any] | None = None
        self._config_read_at = 0.0
        self._profiled_config: dict[str, Any] | None = None

    def config(self) -> dict[str, Any]:
        """The device's settings with this worker's overrides, read at most `CONFIG_CACHE_S` ago."""
        now = time.monotonic()
        if self._config is not None and now - self._config_read_at < CONFIG_CACHE_S:
            return self._config
        config = self.live.device_config(self.device) or {"name": self.device}
        config.update(self.overrides)
        if not config.get("address"):
            raise DeviceError(f"device {self.device} has no address; register it with one")
        self._config, self._config_read_at = config, now
        return config

    def forget_config(self) -> None:
        """Make the next read of the settings a fresh one."""
        self._config = None

    def ready(self, current: str | None) -> DeviceExchange:
        """The exchange for the device's current settings, its port open."""
        exchange = self._exchange_for(self.config(), current)
        exchange.check_ready()
        return exchange

    def _exchange_for(self, config: dict[str, Any], current: str | None) -> DeviceExchange:
        settings = (*(config.get(k) for k in _PORT_SETTINGS), _line_settings(config))
        if self._exchange is None or settings != self._port_settings:
            if self._reader is not None:
                self._reader.stop()
            reader = PortReader(
                self._transport_for(config),
                on_rx=lambda chunk: self._streamed("rx", chunk),
                on_presence=lambda presence: self._stream.append(
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
        self._stream.append(StreamEntry(self.device, kind, chunk, command_id))

    def _noise(self, data: bytes) -> None:
        # Already on the device's stream, as every chunk read is; it answers no command.
        log.debug("noise drained", extra={"device": self.device, "bytes": len(data)})

    def _late_reply(self, command_id: str, response: dict[str, object]) -> None:
        detail = f"late_reply: {json.dumps(response)}"[:LATE_REPLY_DETAIL_CHARS]
        self.live.note(command_id, detail)
        log.info("late reply kept", extra={"device": self.device, "command": command_id})

    def settle_after_timeout(self, context: dict[str, str]) -> None:
        """Drain the port now, not at the next command: a late reply is kept with its command
        as it comes, and the device's reset sequence goes out at once."""
        if self._exchange is None:
            return
        try:
            self._exchange.settle()
        except DeviceError as e:  # still dirty: the next command drains it again
            log.warning("port not clean after a timeout", extra={**context, "error": str(e)})

    def probe(self) -> DeviceError | None:
        """Open the port if it is closed and check it is still there; why not, or None."""
        try:
            exchange = self._exchange
            if exchange is None or not exchange.transport.is_open:
                # Only opening needs the settings; an open port is looked at where it is.
                exchange = self.ready(current=None)
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

    def close(self) -> None:
        """Stop reading the port and close it."""
        if self._reader is not None:
            self._reader.stop()


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

"""The host agent: one per machine beside hardware, holding only the broker URL.

It publishes the serial ports it sees, and keeps one device worker running for each active
serial device assigned to its host (`P:host:<H>:devices`): it starts them, restarts the ones
that crash (`worker_supervisor.py`), stops the ones no longer wanted, and restarts one whose
port settings changed. It reconciles every 2 s and at once when a `hwq.host_sync` message
arrives on its queue `hwq.host.<H>`. With Redis away, the workers stay as they are.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from config import Settings
from tasks.celery_app import broker_key_prefix
from tasks.command_record import utc_now_iso
from tasks.connections import redis_client
from tasks.live_store import LiveStore
from tasks.presence_store import HOST_TTL_S, PresenceStore
from tasks.queues import host_queue
from worker_host.port_address import PortAddress
from worker_host.port_discovery import PortsView, discover
from worker_host.queue_pop import QueuePop
from worker_host.worker_child import WorkerLaunch, WorkerStarter
from worker_host.worker_supervisor import WorkerSupervisor

log = logging.getLogger("hwq.host")

HOST_SYNC_TASK = "hwq.host_sync"
# The wanted workers are read again this often even without a sync message.
RECONCILE_S = 2.0
# The port lists are compared this often (cheap); published on change and every REFRESH_S.
PORTS_POLL_S = 1.0
REFRESH_S = HOST_TTL_S / 3
# The agent's loop looks at its workers this often.
TICK_S = 0.25
# After Redis refused the control queue's pop, wait this long before trying again.
CONTROL_RETRY_S = 1.0
# Settings whose change must reach a running worker: it is restarted with them.
WORKER_SETTINGS = ("name", "transport", "address", "baudrate", "codec", "options")


@dataclass(frozen=True)
class WantedDevice:
    """A device this host should serve, with the settings its worker starts with."""

    name: str
    config: dict[str, Any]

    @property
    def digest(self) -> str:
        """Changes whenever a setting its worker depends on changes."""
        picked = {key: self.config.get(key) for key in WORKER_SETTINGS}
        return hashlib.sha1(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()


def is_served(config: dict[str, Any] | None) -> bool:
    """Whether a device's mirrored settings ask for a worker: serial, and active."""
    if config is None:
        return False
    return (config.get("transport") or "serial") == "serial" and str(
        config.get("active", "1")
    ) not in ("0", "false", "False")


class HostAgent:
    """Serves one host's devices until stopped."""

    def __init__(
        self,
        settings: Settings,
        starter: WorkerStarter,
        ports_dir: Path | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.hostname
        self.ports_dir = ports_dir
        self.log_dir = log_dir or settings.home / "logs"
        self.live = LiveStore(redis_client(settings, max_connections=4), settings.key_prefix)
        self.presence = PresenceStore(self.live)
        self.supervisor = WorkerSupervisor(starter, self.presence, self._launch)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.control = QueuePop(
            self.live.redis, broker_key_prefix(settings.key_prefix) + host_queue(self.name)
        )
        self.started_at = utc_now_iso()
        self.wanted: dict[str, WantedDevice] = {}
        self._published_ports: list[dict[str, Any]] | None = None

    def _launch(self, device: str) -> WorkerLaunch:
        return WorkerLaunch(
            device, self.settings, self.log_dir / f"device-{device}.log", self.ports_dir
        )

    def stop(self, *_: object) -> None:
        """Ask the agent to stop (safe in a signal handler)."""
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then stop every worker and return."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        control = threading.Thread(target=self._consume_control, name="hwq-host-control",
                                   daemon=True)  # fmt: skip
        control.start()
        log.info("host agent started", extra={"host": self.name, "pid": os.getpid()})
        due = {"reconcile": 0.0, "ports": 0.0, "announce": 0.0}
        try:
            while not self.stopping.is_set():
                self._tick(due)
                self.wake.wait(TICK_S)
        finally:
            log.info("host agent stopping its workers", extra={"host": self.name})
            self.supervisor.stop_all()
            with contextlib.suppress(redis.RedisError):
                self.control.interrupt()
            with contextlib.suppress(redis.RedisError):
                self.presence.withdraw_host(self.name)
            log.info("host agent stopped", extra={"host": self.name})

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop()

    def _tick(self, due: dict[str, float]) -> None:
        now = time.monotonic()
        woken = self.wake.is_set()
        self.wake.clear()
        if woken or now >= due["reconcile"]:
            due["reconcile"] = now + RECONCILE_S
            self.reconcile()
        else:
            self.supervisor.supervise()
        if now >= due["ports"]:
            due["ports"] = now + PORTS_POLL_S
            self._publish_ports(force=now >= due["announce"])
        if now >= due["announce"]:
            due["announce"] = now + REFRESH_S
            self._announce()

    def reconcile(self) -> None:
        """Read which devices this host should serve, and make its workers match."""
        try:
            self.wanted = self._read_wanted()
        except redis.RedisError as e:
            # Redis away: the workers keep running as they are; the next tick tries again.
            log.warning("cannot read this host's devices", extra={"host": self.name,
                                                                  "error": str(e)})  # fmt: skip
            self.supervisor.supervise()
            return
        self.supervisor.reconcile(
            {name: w.digest for name, w in self.wanted.items()},
            {name: str(w.config.get("address") or "") for name, w in self.wanted.items()},
        )

    def _read_wanted(self) -> dict[str, WantedDevice]:
        names = sorted(self.presence.host_devices(self.name))
        pipe = self.live.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.live.device_config_key(name))
        wanted = {}
        for name, raw in zip(names, pipe.execute(), strict=True):
            config = self.live.parse_device_config(raw)
            # Still this host's: a move to another host may be half written.
            if is_served(config) and config is not None and config.get("host") == self.name:
                wanted[name] = WantedDevice(name, config)
        return wanted

    def _consume_control(self) -> None:
        """Wake the loop on each `hwq.host_sync` message of this host's queue."""
        while not self.stopping.is_set():
            try:
                message = self.control.next(10.0)
            except redis.RedisError as e:
                log.warning("control queue unreachable", extra={"host": self.name,
                                                                "error": str(e)})  # fmt: skip
                self.stopping.wait(CONTROL_RETRY_S)
                continue
            if message is None:
                continue
            task, device = describe_control(message)
            log.info("control message", extra={"host": self.name, "task": task, "device": device})
            self.wake.set()

    def _publish_ports(self, force: bool) -> None:
        try:
            view = discover(self.ports_dir)
            records = view.records(self._bound_ports(view))
        except OSError as e:
            log.warning("cannot list serial ports", extra={"host": self.name, "error": str(e)})
            return
        if records == self._published_ports and not force:
            return
        try:
            self.presence.publish_ports(self.name, records)
            self._published_ports = records
        except redis.RedisError as e:
            log.warning("ports not published", extra={"host": self.name, "error": str(e)})

    def _bound_ports(self, view: PortsView) -> dict[str, str]:
        """Real port path → the device whose address leads there now."""
        bound: dict[str, str] = {}
        for name, wanted in self.wanted.items():
            path = resolved_path(str(wanted.config.get("address") or ""), view)
            if path is not None:
                bound[path] = name
        return bound

    def _announce(self) -> None:
        record: dict[str, str | int] = {
            "started_at": self.started_at,
            "pid": os.getpid(),
            "version": _version(),
        }
        try:
            self.presence.announce_host(self.name, record)
        except redis.RedisError as e:
            log.warning("host record not refreshed", extra={"host": self.name, "error": str(e)})


def resolved_path(address: str, view: PortsView) -> str | None:
    """The real path a device's address leads to now among the ports seen, or None."""
    try:
        parsed = PortAddress.parse(address)
    except ValueError:
        return None
    if parsed.kind == "url":
        return None
    if parsed.kind == "usb":
        try:
            return os.path.realpath(parsed.serial_url(view.ports))
        except Exception:  # not plugged in, or ambiguous
            return None
    return os.path.realpath(address)


def describe_control(message: bytes) -> tuple[str, str | None]:
    """The task name and the `device` kwarg of a Celery message on the control queue."""
    try:
        envelope = json.loads(message)
        task = str(envelope.get("headers", {}).get("task"))
        body = json.loads(base64.b64decode(envelope.get("body", "")))
        kwargs = body[1] if isinstance(body, list) and len(body) > 1 else {}
        device = kwargs.get("device") if isinstance(kwargs, dict) else None
        return task, None if device is None else str(device)
    except (ValueError, TypeError, AttributeError):
        return "unreadable", None


def _version() -> str:
    try:
        return metadata.version("hwq")
    except metadata.PackageNotFoundError:
        return "unknown"

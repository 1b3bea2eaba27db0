"""Opening and closing devices' connections, and telling host agents what changed (DESIGN §8).

After any registry change that concerns a host (register, update, rename, move, activate,
deactivate, delete) the API sends `hwq.host_sync` to that host's queue: "reconcile now". The
agent also reconciles every 2 s on its own, so a message that cannot be sent is logged and the
change stands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from kombu.exceptions import KombuError
from redis import RedisError
from sqlalchemy.orm import Session

from config import Settings
from tasks.celery_app import PUBLISH_RETRY_POLICY
from tasks.db import registry
from tasks.errors import NotFound
from tasks.host_store import FAILED, host_key
from tasks.live_store import LiveStore
from tasks.queues import host_queue

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("hwq.control")

HOST_SYNC_TASK = "hwq.host_sync"
# How long deactivating waits for the device's worker to let go of its port.
RELEASE_WAIT_S = 10.0
# How often it looks, meanwhile: one EXISTS each time.
RELEASE_POLL_S = 0.1
_CLEAR_FAILED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
"""


class HostSync:
    """Sends `hwq.host_sync` messages on the Celery broker, where Flower can see them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._app: Celery | None = None
        self._lock = threading.Lock()

    def _celery(self) -> Celery:
        # Built on first use: processes that never change the registry never load Celery.
        with self._lock:
            if self._app is None:
                from tasks.celery_app import create_celery

                self._app = create_celery(self.settings)
            return self._app

    def send(self, changes: Iterable[tuple[str | None, str]]) -> None:
        """Tell each (host, device) pair's host to reconcile; failures are logged, not raised."""
        for host, device in dict.fromkeys(changes):
            if not host:
                continue  # served by no agent
            try:
                self._celery().send_task(
                    HOST_SYNC_TASK,
                    kwargs={"device": device},
                    queue=host_queue(host),
                    ignore_result=True,
                    retry_policy=PUBLISH_RETRY_POLICY,
                )
            except (KombuError, RedisError, OSError) as e:
                log.warning(
                    "host not told of a change; its agent finds it within 2 s",
                    extra={"device": device, "host": host, "error": str(e)},
                )


class DeviceActivation:
    """Activate and deactivate devices; mixed into the service, whose stores it uses."""

    live: LiveStore
    host_sync: HostSync

    def _write_session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def _mirror(self, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def _device_view(self, values: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def activate_device(self, name: str) -> dict[str, Any]:
        """Open the device's connection: its host agent starts its worker. A no-op if active."""
        values, changed = self._set_active(name, True)
        if changed:
            self.clear_failure(name)
            self.host_sync.send([(values["host"], name)])
            log.info("device activated", extra={"device": name})
        return self._device_view(values)

    def deactivate_device(self, name: str, wait_s: float = RELEASE_WAIT_S) -> dict[str, Any]:
        """Close the device's connection, waiting up to `wait_s` for its worker to release the
        port while its host agent runs. Queued commands stay queued. A no-op if inactive."""
        values, changed = self._set_active(name, False)
        if changed:
            self.host_sync.send([(values["host"], name)])
            released = self.wait_released(name, wait_s if self._agent_frees(values) else 0.0)
            log.info("device deactivated", extra={"device": name, "released": released})
        return self._device_view(values)

    def _agent_frees(self, values: dict[str, Any]) -> bool:
        """Whether a running host agent will stop the device's worker: with none (or for an
        http-poll device, which has no worker), waiting would free nothing."""
        host = values["host"]
        if not host or values["transport"] != "serial":
            return False
        return bool(self.live.redis.exists(host_key(self.live.prefix, host)))

    def _set_active(self, name: str, active: bool) -> tuple[dict[str, Any], bool]:
        with self._write_session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            changed = row.active != active
            if changed:
                registry.change_device(session, row, {"active": active})
            values = registry.device_values(row)
            if changed:
                self._mirror(values)
        return values, changed

    def wait_released(self, name: str, wait_s: float) -> bool:
        """Whether the device's worker stopped (its `:alive` key went) within `wait_s`."""
        key = f"{self.live.device_config_key(name)}:alive"
        deadline = time.monotonic() + wait_s
        while self.live.redis.exists(key):
            if time.monotonic() >= deadline:
                return False
            time.sleep(RELEASE_POLL_S)
        return True

    def clear_failure(self, name: str) -> None:
        """Forget a `failed` presence and its error: the device gets a fresh start."""
        base = self.live.device_config_key(name)
        # Compare and delete in one step: a `online` the worker writes meanwhile stays.
        self.live.redis.eval(_CLEAR_FAILED, 2, f"{base}:presence", f"{base}:error", FAILED)


__all__ = ["HOST_SYNC_TASK", "DeviceActivation", "HostSync"]

"""Open or close a device's connection (DESIGN §8): the device's `active` flag in its settings
mirror, and a "reconcile now" to the host agent that serves it.

Runs on the gateway's worker threads: it calls the synchronous service.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery

from tasks.queues import host_queue
from tasks.service import HwqService

log = logging.getLogger("hwq.gateway")

HOST_SYNC_TASK = "hwq.host_sync"


class ConnectionSwitch:
    """Activates and deactivates devices, and tells their host agents."""

    def __init__(self, service: HwqService) -> None:
        self.service = service
        self._celery: Celery | None = None
        self._celery_lock = threading.Lock()

    def _app(self) -> Celery:
        with self._celery_lock:
            if self._celery is None:
                from tasks.celery_app import create_celery

                self._celery = create_celery(self.service.settings)
            return self._celery

    def set_active(self, name: str, active: bool) -> dict[str, Any]:
        """Mark the device active or not; its host agent starts or stops its worker."""
        device = self.service.get_device(name)
        live = self.service.live
        live.redis.hset(live.device_config_key(name), "active", "1" if active else "0")
        self.tell_host(device.get("host"), name)
        log.info("device activated" if active else "device deactivated", extra={"device": name})
        return {**self.service.get_device(name), "active": active}

    def connections(self) -> list[dict[str, Any]]:
        """Every device with its live state, and whether its connection is active."""
        devices = self.service.list_devices()
        live = self.service.live
        pipe = live.redis.pipeline(transaction=False)
        for device in devices:
            pipe.hget(live.device_config_key(device["name"]), "active")
        for device, flag in zip(devices, pipe.execute(), strict=True):
            if "active" not in device:
                # A device registered before the flag existed is active (DESIGN §8 default).
                device["active"] = flag not in (b"0", "0")
        return devices

    def tell_host(self, host: str | None, name: str) -> None:
        """Ask the host agent of `host` to reconcile now; a device with no host has none."""
        if not host:
            return
        # Only a nudge: the agent reconciles every 2 s on its own, so a lost one costs little.
        self._app().send_task(HOST_SYNC_TASK, kwargs={"device": name}, queue=host_queue(host))

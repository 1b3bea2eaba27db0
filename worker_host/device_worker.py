"""A device worker: a Celery worker consuming one device's queue, bound to its port."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, bootsteps, signals

from config import Settings
from tasks import definitions
from tasks.celery_app import EXECUTE_TASK
from tasks.connections import redis_client
from tasks.live_store import PRESENCE_TTL_S, LiveStore
from tasks.queues import device_queue, device_worker_name
from worker_host.device_runtime import DeviceRuntime
from worker_host.event_batching import BatchedTaskEvents

log = logging.getLogger("hwq.device")


# Flower and the online flag need a sign of life, not a frequent one: at most fifty idle
# workers on a machine should cost next to nothing.
DEVICE_HEARTBEAT_S = 10


# An idle device worker renews its blocking pop on its queue this often; a message still
# arrives the moment it is pushed, so only idle wake-ups get rarer. Only device workers get
# it: clients waiting for remote-control replies (Flower) need short polls.
IDLE_POLL_S = 10


def device_worker_argv(device: str, settings: Settings, log_level: str) -> list[str]:
    """Celery worker arguments for one device.

    A pool of one thread runs one command at a time while the main thread keeps answering
    heartbeats, Flower and remote control; gossip and mingle are off because a device worker
    needs nothing from its peers.
    """
    return [
        "worker",
        "--queues",
        device_queue(device),
        "--hostname",
        device_worker_name(device, settings.hostname),
        "--pool",
        "threads",
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--without-gossip",
        "--without-mingle",
        "--task-events",
        "--heartbeat-interval",
        str(DEVICE_HEARTBEAT_S),
        "--loglevel",
        log_level,
    ]


def install_device_runtime(
    app: Celery, settings: Settings, device: str, overrides: dict[str, Any]
) -> DeviceRuntime:
    """Plug a runtime for `device` into this process and keep the device's presence fresh."""
    live = LiveStore(
        redis_client(settings, max_connections=8), settings.key_prefix, settings.lease_grace_s
    )
    runtime = DeviceRuntime(
        live, app, device, device_worker_name(device, settings.hostname), overrides
    )
    definitions.install("executor", runtime)

    def claim_on_arrival(request: Any = None, **_: Any) -> None:
        # Celery's loop thread announces each message here, before the hand-off to the pool.
        if request is not None and request.name == EXECUTE_TASK:
            runtime.early_claims.send(request.id)

    signals.task_received.connect(claim_on_arrival, weak=False)
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "polling_interval": IDLE_POLL_S,
        # The claim is a device command's acknowledgement: once a delivery wins it, the
        # command's lease and the reaper decide its fate, and a message popped by a worker
        # that died before claiming leaves its command queued with no message, which the
        # reaper publishes again. kombu's ack emulation (a MULTI/EXEC recording each message
        # before it runs and another removing it after) duplicates that at two Redis round
        # trips per command, a fifth of a device worker's CPU. Without it, a message
        # delivered but not acknowledged when the worker stops is pushed back in memory.
        "ack_emulation": False,
    }

    class DevicePresence(bootsteps.StartStopStep):
        """Marks the device online while the worker runs, offline once it stops."""

        requires = ("celery.worker.components:Pool",)

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.stop_flag = threading.Event()
            self.thread: threading.Thread | None = None

        def start(self, worker: Any) -> None:
            self.thread = threading.Thread(target=self._beat, name="hwq-presence", daemon=True)
            self.thread.start()
            log.info("device worker ready", extra={"device": device})

        def _beat(self) -> None:
            while not self.stop_flag.is_set():
                try:
                    live.mark_present(device)
                except Exception as e:  # Redis away: keep trying, the TTL says offline
                    log.warning("presence not recorded", extra={"device": device, "error": str(e)})
                self.stop_flag.wait(PRESENCE_TTL_S / 3)

        def stop(self, worker: Any) -> None:
            self.stop_flag.set()
            try:
                live.mark_absent(device)
            except Exception:
                log.warning("could not mark device offline", extra={"device": device})
            runtime.close()

    app.steps["worker"].add(DevicePresence)
    app.steps["consumer"].add(BatchedTaskEvents)
    return runtime

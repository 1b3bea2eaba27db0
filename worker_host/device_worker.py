"""A device worker: a Celery worker serving one device's queue, bound to its port.

Celery's event loop gives the worker its name, heartbeats, Flower and remote control; the
device's commands are popped and run by the command thread (`command_pump.py`).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.worker.control import control_command, inspect_command

from config import Settings
from tasks import definitions
from tasks.connections import redis_client
from tasks.device_options import device_profile
from tasks.errors import DeviceError
from tasks.live_store import LiveStore
from tasks.presence_store import PresenceStore
from tasks.queues import device_queue, device_worker_name
from worker_host.command_pump import CommandPump
from worker_host.device_port import serial_transport
from worker_host.device_runtime import DeviceRuntime
from worker_host.port_watch import PortWatch
from worker_host.program_command import ProgramPolicy
from worker_host.program_limits import ProgramLimits
from worker_host.signal_wakeup import WakeLoopOnSignal
from worker_host.transport import PortsLister

log = logging.getLogger("hwq.device")


# Flower and the online flag need a sign of life, not a frequent one: at most fifty idle
# workers on a machine should cost next to nothing.
DEVICE_HEARTBEAT_S = 10


def device_worker_argv(device: str, settings: Settings, log_level: str) -> list[str]:
    """Celery worker arguments for one device.

    The command thread runs one command at a time while the main thread keeps answering
    heartbeats, Flower and remote control; Celery's own pool of one thread stays idle. Gossip
    and mingle are off because a device worker needs nothing from its peers.
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
    app: Celery,
    settings: Settings,
    device: str,
    overrides: dict[str, Any],
    ports_lister: PortsLister | None = None,
) -> DeviceRuntime:
    """Plug a runtime for `device` into this process and keep the device's presence fresh.

    `ports_lister`: the ports a `usb:` address is looked up among (default: pyserial's).
    DeviceError if the device's settings are ones no worker can serve.
    """
    live = LiveStore(
        redis_client(settings, max_connections=8), settings.key_prefix, settings.lease_grace_s
    )
    refuse_bad_settings(live, device, overrides)
    node_name = device_worker_name(device, settings.hostname)
    transport_for = partial(serial_transport, ports_lister=ports_lister)
    programs = ProgramPolicy(
        settings.allow_python, ProgramLimits.from_settings(settings), settings.hostname
    )
    runtime = DeviceRuntime(live, app, device, node_name, overrides, transport_for, programs)
    # `hwq.execute` stays a registered task: should a message reach Celery's pool after all,
    # it runs on the same runtime, under the same lock.
    definitions.install("executor", runtime)
    port_watch = PortWatch(runtime, PresenceStore(live))
    pump = CommandPump(app, runtime, node_name, port_ready=port_watch.ready)
    queue = device_queue(device)

    class LeaveQueueToCommandThread(bootsteps.StartStopStep):
        """Keeps Celery's consumer off the device's queue: the command thread pops it."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, consumer: Any) -> None:
            # Runs after the consumer is made and before its loop starts consuming, on every
            # (re)connection.
            consumer.task_consumer.cancel_by_queue(queue)

    class DevicePresence(bootsteps.StartStopStep):
        """Opens the port and keeps the device's presence while the worker runs."""

        requires = ("celery.worker.components:Pool",)

        def start(self, worker: Any) -> None:
            port_watch.start()
            log.info("device worker ready", extra={"device": device})

        def stop(self, worker: Any) -> None:
            port_watch.stop()

    class CommandThread(bootsteps.StartStopStep):
        """Runs the command thread while the worker runs; a stop lets a running command end.

        It starts after the presence and stops before it, so the device shows online for as
        long as a command may run.
        """

        requires = (DevicePresence,)

        def start(self, worker: Any) -> None:
            pump.start()

        def stop(self, worker: Any) -> None:
            pump.stop()
            # Before the port is closed, or the watch would open it again.
            port_watch.halt()
            runtime.close()
            # Only now "gone": whoever waits for it (a deactivate) finds the port free.
            port_watch.stop()

    app.steps["worker"].add(DevicePresence)
    app.steps["worker"].add(CommandThread)
    app.steps["consumer"].add(LeaveQueueToCommandThread)
    app.steps["consumer"].add(WakeLoopOnSignal)
    report_served_queue(queue)
    refuse_other_queues(device, node_name)
    return runtime


def refuse_bad_settings(live: LiveStore, device: str, overrides: dict[str, Any]) -> None:
    """DeviceError if the device's settings are ones no worker can serve: starting anyway would
    only fail every command, so the worker ends and its host agent says why."""
    try:
        config = live.device_config(device) or {"name": device}
    except redis.RedisError as e:
        # Redis away: the worker waits for the broker as Celery does, and checks each
        # command's settings as it runs them; a crash here would count against the device.
        log.warning("settings not checked at start", extra={"device": device, "error": str(e)})
        return
    config.update({k: v for k, v in overrides.items() if v is not None})
    try:
        device_profile(config)
    except ValueError as e:
        raise DeviceError(f"device {device} has a bad setting: {e}") from None


def report_served_queue(queue: str) -> None:
    """Make `inspect active_queues` list the device's queue beside what Celery consumes.

    Flower's worker page shows a worker's queues, and its broker page finds the queues whose
    depth it shows, through this command; the command thread serves the device's queue, but
    Celery's consumer does not consume it. Replaces Celery's own command in this process.
    """

    @inspect_command(name="active_queues")
    def active_queues(state: Any) -> list[dict[str, Any]]:
        """List the task queues a worker is currently consuming from."""
        consumer = state.consumer.task_consumer
        queues = list(consumer.queues) if consumer else []
        if all(known.name != queue for known in queues):
            queues.append(state.app.amqp.queues[queue])
        return [dict(known.as_dict(recurse=True)) for known in queues]


def refuse_other_queues(device: str, node_name: str) -> None:
    """Make remote control's `add_consumer` refuse: a device worker serves its own queue only.

    Celery's consumer would take the added queue's messages and run them on this worker's
    device, another device's commands included (Flower offers it as a button). The command
    thread serves the device's own queue, so the consumer adds none. Replaces Celery's own
    command in this process.
    """

    @control_command(
        args=[("queue", str), ("exchange", str), ("exchange_type", str), ("routing_key", str)],
        signature="<queue> [exchange [type [routing_key]]]",
    )
    def add_consumer(state: Any, queue: str, *_: Any, **__: Any) -> dict[str, str]:
        """Refused: a device worker consumes its own device's queue only."""
        log.warning("remote control refused: add_consumer", extra={"device": device,
                                                                  "queue": queue})  # fmt: skip
        return {
            "error": f"{node_name} serves only {device_queue(device)}, the queue of device "
            f"{device}; it consumes no other queue"
        }

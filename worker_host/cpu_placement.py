"""Keeps each hwq process on one CPU, so its threads hand work to each other without IPIs.

A Python process runs one thread at a time anyway: the interpreter lock sees to that. But
each hand-off between its threads (granian's I/O thread and the request's thread in the API,
the event loop and the pool thread in a device worker) wakes the other thread wherever the
kernel last ran it. On another CPU that wake-up is an inter-processor interrupt, which on a
virtual machine costs tens of microseconds and often a halted virtual CPU woken by the host.
With every thread of a process on one CPU the woken thread simply runs next; bench/README.md
gives what that moved on a two-CPU virtual machine.

The central processes (API, server worker) share the last CPU; device workers take the CPUs
in turn, counted per host in Redis, so two devices on a two-CPU machine never share one
while the other idles. A device worker is placed the same way whether `hwq device-worker`
started it or its host agent forked it, which is why this lives beside the device worker;
the central roles use it too. Nothing here runs unless `HWQ_PIN_CPU` asks for it.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import redis

from config import Settings
from tasks.connections import redis_client

log = logging.getLogger("hwq.cpu")

_TASKS = Path("/proc/self/task")


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on, ascending; empty where the system cannot say."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def central_cpu(cpus: list[int]) -> int:
    """Where the API and the server worker run: the last CPU."""
    return cpus[-1]


def device_cpu(cpus: list[int], turn: int) -> int:
    """Where the device worker that took `turn` (0, 1, 2, … on its host) runs."""
    return cpus[turn % len(cpus)]


def pin_to(cpu: int) -> None:
    """Move this process, every thread it has and every thread it will start, onto `cpu`."""
    os.sched_setaffinity(0, {cpu})
    # A thread's affinity is its own: the ones already running move one by one.
    for entry in _TASKS.iterdir() if _TASKS.is_dir() else ():
        try:
            os.sched_setaffinity(int(entry.name), {cpu})
        except (ProcessLookupError, ValueError):  # the thread ended meanwhile
            continue


def pin_central_process(role: str) -> int | None:
    """Keep an API or server worker process on the central CPU; the CPU, or None if free."""
    return _pin(central_cpu, role=role)


def next_device_turn(client: redis.Redis, key_prefix: str, hostname: str) -> int | None:
    """This host's next device-worker number (0, 1, 2, …), or None while Redis is away."""
    try:
        return int(client.incr(f"{key_prefix}:cpu-turns:{hostname}")) - 1
    except redis.RedisError:
        return None


def pin_device_process(device: str, turn: int | None) -> int | None:
    """Keep a device worker process on the CPU of its `turn`; the CPU, or None if free.

    Without a turn (Redis not up yet), a hash of the device name picks the CPU, which still
    spreads many devices.
    """
    chosen_turn = zlib.crc32(device.encode()) if turn is None else turn
    return _pin(
        lambda cpus: device_cpu(cpus, chosen_turn), role="device-worker", device=device
    )


def _pin(choose: Callable[[list[int]], int], **context: str) -> int | None:
    """Pin to the CPU `choose` picks among the allowed ones, when there is a choice."""
    cpus = allowed_cpus()
    if len(cpus) < 2:
        return None
    cpu = choose(cpus)
    try:
        pin_to(cpu)
    except OSError as e:  # a sandbox or cpuset that forbids it: the kernel places threads
        log.info("threads left to the kernel's placement", extra={**context, "error": str(e)})
        return None
    log.info("threads kept on one CPU", extra={**context, "cpu": cpu})
    return cpu


def pin_device_worker(settings: Settings, device: str) -> int | None:
    """With `HWQ_PIN_CPU`, keep this device worker process on the CPU of the next turn of its
    host; call it before the process starts any thread (its threads inherit the CPU)."""
    if not settings.pin_cpu:
        return None
    client = redis_client(settings, max_connections=1)
    try:
        turn = next_device_turn(client, settings.key_prefix, settings.hostname)
    finally:
        client.close()
    return pin_device_process(device, turn)

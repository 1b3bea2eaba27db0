"""Queue names: one per device, one per hardware host, one for the server worker."""

from __future__ import annotations

import re

SERVER_QUEUE = "hwq.server"
DEVICE_QUEUE_PREFIX = "hwq.device."
HOST_QUEUE_PREFIX = "hwq.host."

# Device names become queue names and Redis keys, so they are kept to a safe alphabet.
DEVICE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Host names (a machine's short name, or one given to `hwq host --name`) too.
HOST_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def device_queue(device: str) -> str:
    """The queue a device's worker consumes."""
    return f"{DEVICE_QUEUE_PREFIX}{device}"


def host_queue(hostname: str) -> str:
    """The queue a hardware host's agent consumes."""
    return f"{HOST_QUEUE_PREFIX}{hostname}"


def device_worker_name(device: str, hostname: str) -> str:
    """The Celery node name of a device's worker, as Flower shows it."""
    return f"{device}@{hostname}"

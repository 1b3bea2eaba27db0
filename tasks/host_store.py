"""Hosts in Redis: which devices each host agent serves, what the agents announce, presence.

The host agents write their records (`P:host:<H>`, `P:host:<H>:ports`) and the device
workers their presence; the API keeps the host sets (`P:host:<H>:devices`) with the device
mirror and reads the rest here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from tasks.redis_replies import members, text, text_fields

log = logging.getLogger("hwq.hosts")

# What `P:device:<name>:presence` holds, and what the API shows (DESIGN §3).
ONLINE = "online"
PORT_MISSING = "port-missing"
OFFLINE = "offline"
INACTIVE = "inactive"
FAILED = "failed"


def hosts_key(prefix: str) -> str:
    """The set of every host name that has announced itself."""
    return f"{prefix}:hosts"


def host_key(prefix: str, host: str) -> str:
    """A host agent's record; it expires unless the agent refreshes it."""
    return f"{prefix}:host:{host}"


def host_devices_key(prefix: str, host: str) -> str:
    """The names of the devices a host agent serves."""
    return f"{prefix}:host:{host}:devices"


def host_ports_key(prefix: str, host: str) -> str:
    """The serial ports a host agent last saw, as a JSON list."""
    return f"{prefix}:host:{host}:ports"


def move_between_hosts(
    pipe: Any, prefix: str, device: str, old: str | None, new: str | None
) -> None:
    """Queue on `pipe` the moves that leave `device` in the set of host `new` alone."""
    if old and old != new:
        pipe.srem(host_devices_key(prefix, old), device)
    if new:
        pipe.sadd(host_devices_key(prefix, new), device)


def presence(active: str | None, reported: str | None, alive: bool) -> str:
    """A device's presence from its mirror's `active`, its `:presence` key and its `:alive` key."""
    if active == "0":
        return INACTIVE
    if reported == FAILED:
        return FAILED
    if not alive:
        return OFFLINE
    if reported == PORT_MISSING:
        return PORT_MISSING
    return ONLINE


def presence_fields(client: redis.Redis, base: str) -> dict[str, Any]:
    """`presence`, `error`, `online` and `last_seen` of the device whose mirror is `base`."""
    pipe = client.pipeline(transaction=False)
    pipe.hget(base, "active")
    pipe.mget(f"{base}:presence", f"{base}:error", f"{base}:last_seen")
    pipe.exists(f"{base}:alive")
    active, (reported, error, last_seen), alive = pipe.execute()
    shown = presence(text(active) if active else None, text(reported or b""), bool(alive))
    return {
        "presence": shown,
        "error": text(error) if error else None,
        "online": shown == ONLINE,
        "last_seen": text(last_seen) if last_seen else None,
    }


class HostStore:
    """Reads of what the host agents announce, and the host sets the API keeps."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def hosts(self, devices_by_host: dict[str, list[str]]) -> list[dict[str, Any]]:
        """Every host that announced itself or has devices (`devices_by_host`, from the
        registry): `{name, online, last_seen, devices}`, by name."""
        announced = members(self.redis.smembers(hosts_key(self.prefix)))
        names = sorted(set(announced) | set(devices_by_host))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(host_key(self.prefix, name))
        records = pipe.execute()
        items = []
        for name, raw in zip(names, records, strict=True):
            record = text_fields(raw or {})
            items.append(
                {
                    "name": name,
                    "online": bool(record),
                    "last_seen": self._last_seen(name, record),
                    "devices": sorted(devices_by_host.get(name, [])),
                }
            )
        return items

    def _last_seen(self, name: str, record: dict[str, str]) -> str | None:
        # The record expires with the agent; its last word is kept beside it for offline hosts.
        key = f"{host_key(self.prefix, name)}:last_seen"
        if record.get("last_seen"):
            self.redis.set(key, record["last_seen"])
            return record["last_seen"]
        kept = self.redis.get(key)
        return text(kept) if kept else None

    def announced(self, host: str) -> bool:
        """Whether the host's agent ever announced itself."""
        return bool(self.redis.sismember(hosts_key(self.prefix), host))

    def ports(self, host: str) -> list[dict[str, Any]]:
        """The ports the host last announced (none once its announcement expired)."""
        raw = self.redis.get(host_ports_key(self.prefix, host))
        if not raw:
            return []
        try:
            ports = json.loads(raw)
        except ValueError:
            log.warning("unreadable port list", extra={"host": host})
            return []
        return [port for port in ports if isinstance(port, dict)] if isinstance(ports, list) else []


__all__ = [
    "FAILED",
    "INACTIVE",
    "OFFLINE",
    "ONLINE",
    "PORT_MISSING",
    "HostStore",
    "host_devices_key",
    "move_between_hosts",
    "presence",
    "presence_fields",
]

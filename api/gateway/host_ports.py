"""The hosts and the serial ports each one sees, as their host agents publish them in Redis.

`P:hosts` names every host that ever announced itself; `P:host:<H>` exists while it is
online; `P:host:<H>:ports` holds the JSON list of its ports (shared contract, DESIGN §8).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

log = logging.getLogger("hwq.gateway")


class HostPorts:
    """Reads what the host agents published."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    async def hosts(self) -> list[dict[str, Any]]:
        """Every known host, whether it is online, and the ports it sees (none when offline)."""
        names = sorted(_text(n) for n in await self.redis.smembers(f"{self.prefix}:hosts"))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(f"{self.prefix}:host:{name}")
            pipe.get(f"{self.prefix}:host:{name}:ports")
        replies = await pipe.execute()
        found = []
        for index, name in enumerate(names):
            online, ports = replies[2 * index], replies[2 * index + 1]
            found.append({"name": name, "online": bool(online), "ports": _ports(name, ports)})
        return found

    async def host_serving(self, address: str, default: str) -> str:
        """The online host whose ports include `address` (its path, by-id link or usb:VID:PID),
        else `default`: the machine the gateway runs on."""
        for host in await self.hosts():
            if host["online"] and any(_names_port(address, port) for port in host["ports"]):
                return str(host["name"])
        return default


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ports(host: str, raw: bytes | str | None) -> list[dict[str, Any]]:
    if raw is None:
        return []
    try:
        ports = json.loads(raw)
    except ValueError:
        log.warning("unreadable port list", extra={"host": host})
        return []
    return [port for port in ports if isinstance(port, dict)] if isinstance(ports, list) else []


def _names_port(address: str, port: dict[str, Any]) -> bool:
    if address in (port.get("path"), port.get("by_id")):
        return True
    if not address.startswith("usb:"):
        return False
    # usb:VID:PID[:SERIAL], as the host agent resolves it (DESIGN §8).
    wanted = address[4:].lower().split(":", 2)
    have = [str(port.get("vid") or "").lower(), str(port.get("pid") or "").lower()]
    if len(wanted) == 3:
        have.append(str(port.get("serial_number") or "").lower())
    return wanted == have

"""What the API says about hosts: the agents, their devices, and the ports each one sees."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.orm import Session

from tasks.db import registry
from tasks.errors import NotFound
from tasks.host_store import HostStore
from tasks.live_store import LiveStore
from tasks.queues import HOST_NAME_PATTERN

# What the API shows of each port a host agent announces (the shared contract's fields).
PORT_FIELDS = ("path", "by_id", "description", "hwid", "vid", "pid", "serial_number",
               "location", "manufacturer", "product", "device")  # fmt: skip
# usb:VID:PID[:SERIAL], as worker_host/port_address.py reads it on the host.
_USB = re.compile(r"^usb:([0-9a-fA-F]{4}):([0-9a-fA-F]{4})(?::(.+))?$")


def address_names_port(address: str | None, port: dict[str, Any]) -> bool:
    """Whether a device's address resolves to this announced port: the same path or by-id
    link, or the same USB adapter (vid, pid and, when the address gives one, serial number)."""
    if not address:
        return False
    address = address.strip()
    if address in (port.get("path"), port.get("by_id")):
        return True
    match = _USB.match(address)
    if match is None:
        return False
    vid, pid, serial_number = match.groups()
    if str(port.get("vid") or "").lower() != vid.lower():
        return False
    if str(port.get("pid") or "").lower() != pid.lower():
        return False
    return serial_number is None or port.get("serial_number") == serial_number


def bind_ports(ports: list[dict[str, Any]], devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ports with every contract field (null where the agent left one out) and `device`
    filled: the agent's word first, else the first registered device of that host whose
    address names the port, else null. An entry without a path is no port."""
    bound = []
    for port in ports:
        if not isinstance(port.get("path"), str):
            continue
        device = port.get("device")
        if not device:
            device = next(
                (d["name"] for d in devices if address_names_port(d.get("address"), port)), None
            )
        bound.append({**{field: port.get(field) for field in PORT_FIELDS}, "device": device})
    return bound


class HostReads:
    """Reads of hosts and ports; mixed into the service, whose stores it uses."""

    live: LiveStore

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    @property
    def host_store(self) -> HostStore:
        """The host agents' records."""
        return HostStore(self.live.redis, self.live.prefix)

    def list_hosts(self) -> list[dict[str, Any]]:
        """Every host agent: `{name, online, last_seen, devices}`."""
        by_host: dict[str, list[str]] = {}
        for device in self._registered():
            if device["host"]:
                by_host.setdefault(device["host"], []).append(device["name"])
        return self.host_store.hosts(by_host)

    def host_ports(self, host: str) -> list[dict[str, Any]]:
        """The ports a host last announced, each with the device bound to it; NotFound for a
        host that never announced itself and serves no device."""
        store = self.host_store
        devices = [d for d in self._registered() if d["host"] == host]
        if not HOST_NAME_PATTERN.match(host) or not (devices or store.announced(host)):
            raise NotFound(f"no host named {host!r}")
        return bind_ports(store.ports(host), devices)

    def _registered(self) -> list[dict[str, Any]]:
        # SQL, not the host sets: the registry is the truth the sets are rebuilt from.
        with self._session() as session:
            return [registry.device_values(row) for row in registry.list_devices(session)]


__all__ = ["HostReads", "address_names_port", "bind_ports"]

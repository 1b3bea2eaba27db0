"""Presence in Redis: whether a device's port is open, and which host agents are up.

Beside the live store's `P:device:<name>:alive` and `:last_seen`:
- `P:device:<name>:presence` — `online` or `port-missing`, written by the device worker with
  the same lifetime as `:alive`; or `failed`, written by its host agent, kept until cleared.
- `P:device:<name>:error` — why the port is missing or the worker failed.
- `P:hosts` — every host that ever announced itself; `P:host:<H>` its record (lapses unless
  refreshed); `P:host:<H>:ports` the ports it sees; `P:host:<H>:devices` the devices it serves.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from tasks.command_record import utc_now_iso
from tasks.live_devices import PRESENCE_TTL_S
from tasks.live_store import LiveStore
from tasks.redis_replies import members, text

ONLINE = "online"
PORT_MISSING = "port-missing"
FAILED = "failed"
# A host agent's record and port list lapse after this long unless refreshed (every third).
HOST_TTL_S = 30
# An error kept with a presence is cut to this many characters.
MAX_ERROR_CHARS = 4000


class PresenceStore:
    """Reads and writes of device presence and host records, under the live store's prefix."""

    def __init__(self, live: LiveStore) -> None:
        self.live = live
        self.redis: redis.Redis = live.redis
        self.prefix = live.prefix

    # keys ---------------------------------------------------------------------------------
    def presence_key(self, device: str) -> str:
        """What the device's port is doing: online, port-missing or failed."""
        return f"{self.live.device_config_key(device)}:presence"

    def error_key(self, device: str) -> str:
        """Why the device is not online."""
        return f"{self.live.device_config_key(device)}:error"

    @property
    def hosts_key(self) -> str:
        """Every host name that has announced itself."""
        return f"{self.prefix}:hosts"

    def host_key(self, host: str) -> str:
        """A host agent's record, present while the agent runs."""
        return f"{self.prefix}:host:{host}"

    def host_ports_key(self, host: str) -> str:
        """The serial ports a host sees, as JSON."""
        return f"{self.prefix}:host:{host}:ports"

    # device side --------------------------------------------------------------------------
    def mark_port(self, device: str, error: str | None) -> None:
        """A device worker says it is alive, and whether its port is open (`error` if not)."""
        base = self.live.device_config_key(device)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{base}:alive", "1", ex=PRESENCE_TTL_S)
        pipe.set(f"{base}:last_seen", utc_now_iso())
        pipe.set(self.presence_key(device), PORT_MISSING if error else ONLINE, ex=PRESENCE_TTL_S)
        if error:
            pipe.set(self.error_key(device), error[:MAX_ERROR_CHARS])
        else:
            pipe.delete(self.error_key(device))
        pipe.execute()

    def mark_stopped(self, device: str) -> None:
        """A device worker is stopping: no longer alive, its port released."""
        base = self.live.device_config_key(device)
        self.redis.delete(f"{base}:alive", self.presence_key(device))

    def presence(self, device: str) -> tuple[str | None, str | None]:
        """The device's presence and error as stored."""
        presence, error = self.redis.mget(self.presence_key(device), self.error_key(device))
        return (text(presence) if presence else None, text(error) if error else None)

    # host side ----------------------------------------------------------------------------
    def restarts_key(self, device: str) -> str:
        """How many times the host agent has seen the device's worker crash (a counter)."""
        return f"{self.live.device_config_key(device)}:restarts"

    def count_crash(self, device: str) -> None:
        """One more crash of the device's worker, for the metrics' restart counter."""
        self.redis.incr(self.restarts_key(device))

    def mark_failed(self, device: str, reason: str) -> None:
        """The host agent gave up on the device's worker."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.presence_key(device), FAILED)
        pipe.set(self.error_key(device), reason[:MAX_ERROR_CHARS])
        pipe.execute()

    def clear_failed(self, device: str) -> None:
        """Forget that the device's worker failed, so it is tried again."""
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.presence_key(device))
                    if pipe.get(self.presence_key(device)) != FAILED.encode():
                        pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.delete(self.presence_key(device), self.error_key(device))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def announce_host(self, host: str, record: dict[str, str | int]) -> None:
        """Refresh a host agent's record, and add the host to the set of known hosts."""
        key = self.host_key(host)
        mapping: dict[FieldT, EncodableT] = {key: value for key, value in record.items()}
        mapping.update(name=host, last_seen=utc_now_iso())
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(self.hosts_key, host)
        pipe.delete(key)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, HOST_TTL_S)
        pipe.execute()

    def publish_ports(self, host: str, ports: list[dict[str, Any]]) -> None:
        """Say which serial ports the host sees."""
        self.redis.set(self.host_ports_key(host), json.dumps(ports), ex=HOST_TTL_S)

    def host_devices(self, host: str) -> list[str]:
        """The devices assigned to the host."""
        return members(self.redis.smembers(self.live.host_devices_key(host)))

    def withdraw_host(self, host: str) -> None:
        """A host agent is stopping: it no longer counts as online."""
        self.redis.delete(self.host_key(host), self.host_ports_key(host))

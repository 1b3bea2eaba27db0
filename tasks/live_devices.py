"""A device's side of the live state in Redis: its mirrored settings, its live sets, presence.

Under `P:device:<name>` the API mirrors each device's settings from SQL so workers need no
database, and beside it workers keep `:alive` and `:last_seen`; `P:dev:<name>:queued`,
`:inflight` and `:responded` hold its commands by state. The transition script keeps those
sets; these are the reads of them and the writes of the mirror and of presence, kept apart
from the commands' own state (tasks/live_store.py), whose store inherits them.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis
from redis.typing import EncodableT, FieldT

from tasks.command_record import to_redis_fields, utc_now_iso
from tasks.device_stream import stream_key
from tasks.host_store import host_devices_key, move_between_hosts, presence_fields
from tasks.lifecycle import device_state
from tasks.redis_replies import Fields, text, text_fields

# A device worker refreshes its presence this often and it lapses after the TTL.
PRESENCE_TTL_S = 30


class LiveDevices:
    """Devices' keys, mirrored settings, live counts and presence (a part of LiveStore)."""

    # The live store's client and key prefix.
    redis: Redis
    prefix: str

    # keys ---------------------------------------------------------------------------------
    def device_set_key(self, device: str, which: str) -> str:
        """One of a device's live sets: queued, inflight or responded."""
        return f"{self.prefix}:dev:{device}:{which}"

    def device_config_key(self, device: str) -> str:
        """The device's settings, mirrored from SQL so workers need no database."""
        return f"{self.prefix}:device:{device}"

    def stream_key(self, device: str) -> str:
        """The device's live stream: its input and output, presence and commands' states."""
        return stream_key(self.prefix, device)

    def host_devices_key(self, host: str) -> str:
        """The set of the names of the devices a host agent serves."""
        return host_devices_key(self.prefix, host)

    # live sets ----------------------------------------------------------------------------
    def device_counts(self, device: str) -> tuple[int, int, int]:
        """How many of the device's commands are queued, in flight and awaiting analysis."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.device_set_key(device, "queued"))
        pipe.scard(self.device_set_key(device, "inflight"))
        pipe.scard(self.device_set_key(device, "responded"))
        queued, inflight, responded = pipe.execute()
        return int(queued), int(inflight), int(responded)

    def device_status(self, device: str) -> dict[str, Any]:
        """Live fields of a device: state 0-3, queue depth, presence."""
        queued, inflight, responded = self.device_counts(device)
        return {
            "state": int(device_state(queued, inflight, responded)),
            "queue_depth": queued,
            **presence_fields(self.redis, self.device_config_key(device)),
        }

    def device_busy(self, device: str) -> bool:
        """Whether the device has commands queued or in flight."""
        queued, inflight, _ = self.device_counts(device)
        return bool(queued or inflight)

    # settings mirror ----------------------------------------------------------------------
    def put_device_config(self, device: str, config: dict[str, Any]) -> None:
        """Mirror a device's settings for its worker, and keep it in its host's set only."""
        key = self.device_config_key(device)
        old_host = self.redis.hget(key, "host")
        pipe = self.redis.pipeline()
        move_between_hosts(
            pipe, self.prefix, device, text(old_host or b""), config.get("host") or None
        )
        pipe.delete(key)
        flat: dict[FieldT, EncodableT] = {
            k: v for k, v in to_redis_fields(config).items() if k != "options"
        }
        flat["options"] = json.dumps(config.get("options") or {})
        pipe.hset(key, mapping=flat)
        pipe.execute()

    def device_config(self, device: str) -> dict[str, Any] | None:
        """A device's mirrored settings, or None if it is not registered."""
        return self.parse_device_config(self.redis.hgetall(self.device_config_key(device)))

    @staticmethod
    def parse_device_config(raw: Fields) -> dict[str, Any] | None:
        """A device's settings from the HGETALL of its mirror; None if that was empty."""
        if not raw:
            return None
        values = text_fields(raw)
        config: dict[str, Any] = dict(values)
        config["baudrate"] = int(values.get("baudrate") or 115200)
        config["options"] = json.loads(values.get("options") or "{}")
        # A mirror written before devices could be deactivated holds no `active`.
        config["active"] = values.get("active") != "0"
        return config

    def forget_device(self, device: str) -> None:
        """Drop a device's mirror, its presence, its live sets and its place in its host's set."""
        base = self.device_config_key(device)
        host = self.redis.hget(base, "host")
        if host:
            self.redis.srem(host_devices_key(self.prefix, text(host)), device)
        self.redis.delete(
            base,
            f"{base}:alive",
            f"{base}:last_seen",
            f"{base}:presence",
            f"{base}:error",
            f"{base}:restarts",
            # The legacy protocol's current command (LegacyProtocol.current_key): a device made
            # anew under this name starts with none.
            f"{base}:legacy",
            self.stream_key(device),
            *(self.device_set_key(device, which) for which in ("queued", "inflight", "responded")),
        )

    # presence -----------------------------------------------------------------------------
    def mark_present(self, device: str) -> None:
        """A device worker says it is alive."""
        base = self.device_config_key(device)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{base}:alive", "1", ex=PRESENCE_TTL_S)
        pipe.set(f"{base}:last_seen", utc_now_iso())
        pipe.execute()

    def mark_absent(self, device: str) -> None:
        """A device worker is shutting down."""
        self.redis.delete(f"{self.device_config_key(device)}:alive")

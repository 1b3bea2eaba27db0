"""Host agents and simulated USB adapters on a local stack, for end-to-end tests and benches.

Devices are put on a host by writing their settings mirror in Redis (what the registry does
when a device is registered or changed), so a test can choose any host name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

from bench.local_stack import Stack
from tasks.live_store import LiveStore
from tasks.presence_store import PresenceStore

# A vendor and product id the simulated adapters use (a common USB-serial bridge's).
SIM_VID, SIM_PID = "1a86", "7523"


class HostFleet:
    """Host agents, simulated adapters and device mirrors on one stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.live = LiveStore(self.redis, stack.key_prefix)
        self.presence_store = PresenceStore(self.live)
        self.ports_dir = stack.home / "ports"
        self.ports_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Drop the Redis connection."""
        self.redis.close()

    def start_agent(self, host: str) -> None:
        """Start `hwq host --name HOST` over the stack's ports folder."""
        self.stack.spawn(f"host-{host}", "host", "--name", host, "--ports-dir",
                         str(self.ports_dir), with_database=False)  # fmt: skip
        self.stack.wait_for(lambda: self.redis.exists(self.presence_store.host_key(host)),
                            f"host agent {host}")  # fmt: skip

    def agent_pid(self, host: str) -> int:
        """The process id of a host agent."""
        return self.stack.processes[f"host-{host}"].pid

    def worker_pids(self, host: str) -> set[int]:
        """The pids of a host agent's device workers (the children of its fork server)."""
        return {pid for child in child_pids(self.agent_pid(host)) for pid in child_pids(child)}

    def plug_adapter(self, name: str, serial_number: str) -> Path:
        """Start a simulated scpi device behind a USB adapter; its by-id link once plugged."""
        self.stack.spawn(f"sim-{name}", "sim", "--name", name, "--home", str(self.stack.home),
                         "--usb", f"{SIM_VID}:{SIM_PID}:{serial_number}", "--ports-dir",
                         str(self.ports_dir), with_database=False)  # fmt: skip
        link = self.ports_dir / f"usb-HWQ_Sim_{serial_number}-if00-port0"
        self.stack.wait_for(lambda: Path(str(link) + ".json").exists(), f"adapter {name}")
        return link

    def signal_adapter(self, name: str, sig: int) -> None:
        """SIGUSR1 unplugs a simulated adapter, SIGUSR2 plugs it back."""
        os.kill(self.stack.processes[f"sim-{name}"].pid, sig)

    def unplug(self, name: str) -> None:
        """Unplug a simulated adapter."""
        self.signal_adapter(name, signal.SIGUSR1)

    def replug(self, name: str) -> None:
        """Plug a simulated adapter back in (on a new pseudo-terminal)."""
        self.signal_adapter(name, signal.SIGUSR2)

    def register(self, name: str, address: str, host: str, **settings: Any) -> None:
        """Register a device over the API, then put it on `host` in its mirror."""
        reply = self.stack.request("POST", "/devices", body={"name": name, "address": address})
        assert reply.status == 201, reply.body
        self.put(name, address=address, host=host, **settings)

    def put(self, name: str, **changes: Any) -> None:
        """Change a device's mirrored settings, as the registry does on a change."""
        config = self.live.device_config(name) or {"name": name}
        config.update(changes)
        self.live.put_device_config(name, config)

    def presence(self, name: str) -> str:
        """The device's presence as the API contract computes it."""
        device = self.stack.device(name)
        if "presence" in device:
            return str(device["presence"])
        config = self.live.device_config(name) or {}
        stored, _ = self.presence_store.presence(name)
        alive = self.redis.exists(f"{self.live.device_config_key(name)}:alive")
        if str(config.get("active", "1")) == "0":
            return "inactive"
        if stored == "failed":
            return "failed"
        if not alive:
            return "offline"
        return "port-missing" if stored == "port-missing" else "online"

    def wait_presence(self, name: str, wanted: str, timeout: float = 60.0) -> float:
        """Wait until the device's presence is `wanted`; the seconds it took."""
        started = time.monotonic()
        self.stack.wait_for(lambda: self.presence(name) == wanted,
                            f"{name} {wanted}", timeout)  # fmt: skip
        return time.monotonic() - started

    def error(self, name: str) -> str:
        """Why the device is not online, as stored."""
        return self.presence_store.presence(name)[1] or ""


def child_pids(pid: int) -> set[int]:
    """The pids of a process's children."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return {int(p) for p in handle.read().split()}
    except OSError:
        return set()

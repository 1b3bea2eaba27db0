"""A device worker's watch on its port: opens it at start, notices when it vanishes, says so.

The worker's presence follows the port: `online` while it is open, `port-missing` (with the
port and the OS error) while it cannot be opened or has gone. The command thread claims
nothing while the port is missing, so queued commands wait for the adapter to come back
(or expire) rather than fail one after another.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from tasks.live_devices import PRESENCE_TTL_S
from tasks.presence_store import PresenceStore
from worker_host.device_runtime import DeviceRuntime

log = logging.getLogger("hwq.device")

# How often the port is looked at: a vanished port shows within this plus one Redis write,
# well inside the 5 s hot-plug promise, and a returning one is reopened as quickly.
PROBE_INTERVAL_S = 1.0
# Presence is written when it changes and refreshed this often, well within its lifetime.
REFRESH_S = PRESENCE_TTL_S / 3


class PortWatch:
    """A thread probing the device's port every second and keeping its presence."""

    def __init__(self, runtime: DeviceRuntime, presence: PresenceStore) -> None:
        self.runtime = runtime
        self.presence = presence
        # Set while the port is open: the command thread claims only then.
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Probe in a thread of its own."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="hwq-port-watch", daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Stop probing, saying nothing yet: the port is left as it is for its owner to close."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(PROBE_INTERVAL_S * 5)

    def stop(self) -> None:
        """Stop probing and say the worker is gone (again, if it already stopped)."""
        self.halt()
        try:
            self.presence.mark_stopped(self.runtime.device)
        except redis.RedisError:
            log.warning("could not mark device offline", extra={"device": self.runtime.device})

    def _probe(self) -> str | None:
        """Why the port is not usable now, or None. Never raises: were this thread to end,
        the presence would lapse to offline and the command thread would wait for good."""
        try:
            problem = self.runtime.probe_port()
        except Exception as e:
            log.exception("port probe failed", extra={"device": self.runtime.device})
            return f"cannot open serial port: {e!r}"
        return None if problem is None else str(problem)

    def _run(self) -> None:
        device = self.runtime.device
        written: str | None = "never written"
        written_at = 0.0
        while not self._stopping.is_set():
            error = self._probe()
            if error is None:
                self.ready.set()
            else:
                self.ready.clear()
            now = time.monotonic()
            if error != written or now - written_at >= REFRESH_S:
                if error != written:
                    if error is None:
                        log.info("port open", extra={"device": device})
                    else:
                        log.warning("port missing", extra={"device": device, "error": error})
                try:
                    self.presence.mark_port(device, error)
                    written, written_at = error, now
                except redis.RedisError as e:  # Redis away: keep trying; the TTL says offline
                    log.warning("presence not recorded", extra={"device": device, "error": str(e)})
            self._stopping.wait(PROBE_INTERVAL_S)

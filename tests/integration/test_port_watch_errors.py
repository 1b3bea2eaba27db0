"""A port probe that raises something unforeseen (a terminal refusing its settings raises
termios.error, which is no OSError) leaves the device port-missing with that error, and the
watch probes on: the port comes back once the probe succeeds.

Guards against: the watch thread died on such an error, so the device's presence lapsed to
`offline` ("no worker serves it") while its worker ran, and no command ever ran again.
"""

from __future__ import annotations

import termios
import time
from typing import cast

import redis

from tasks.errors import DeviceError
from tasks.live_store import LiveStore
from tasks.presence_store import PresenceStore
from worker_host.device_runtime import DeviceRuntime
from worker_host.port_watch import PortWatch

WITHIN_S = 30


class FlakyPort:
    """The part of a device runtime the watch uses; its probe raises until told to stop."""

    device = "flaky"

    def __init__(self) -> None:
        self.refusing = True

    def probe_port(self) -> DeviceError | None:
        if self.refusing:
            raise termios.error(22, "Invalid argument")
        return None


def _wait_for(presence: PresenceStore, wanted: str) -> tuple[str | None, str | None]:
    deadline = time.monotonic() + WITHIN_S
    stored = presence.presence(FlakyPort.device)
    while stored[0] != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        stored = presence.presence(FlakyPort.device)
    return stored


def test_an_unforeseen_probe_error_reads_port_missing_and_the_watch_goes_on(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    presence = PresenceStore(LiveStore(redis_client, key_prefix))
    port = FlakyPort()
    watch = PortWatch(cast(DeviceRuntime, port), presence)
    watch.start()
    try:
        state, error = _wait_for(presence, "port-missing")
        assert state == "port-missing"
        assert error is not None and "Invalid argument" in error
        assert not watch.ready.is_set()

        port.refusing = False

        assert _wait_for(presence, "online") == ("online", None)
        assert watch.ready.is_set()
    finally:
        watch.stop()

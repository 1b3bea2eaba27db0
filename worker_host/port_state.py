"""Whether a port may still hold bytes meant for no current command, and draining it until not.

A port is clean after a command got its whole reply and nothing more. It is dirty after a
timeout (the device may still answer), after a write or read that was cut short, after a
reply followed by more bytes, and whenever a worker opens it (a previous worker may have died
mid-command). Before the next command is written a dirty port is drained until the line has
been quiet for the device's idle time; a reply the port still owes is waited for and handed
back as a late reply of the command that asked for it. If the line never goes quiet within
the grace, the next command is refused rather than given someone else's bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tasks.device_options import DeviceProfile
from tasks.errors import PortNotClean
from worker_host.transport import Transport

log = logging.getLogger("hwq.device")

NoiseSink = Callable[[bytes], None]
# Told the command id and the response of a reply that came after its command had ended.
LateReplySink = Callable[[str, dict[str, object]], None]


class OwedReply(Protocol):
    """What draining needs from the reader of a reply the port still owes."""

    def feed(self, data: bytes) -> bytes:
        """Take received bytes."""
        ...

    def complete(self, idle_for_s: float) -> bool:
        """True once the reply is whole."""
        ...

    def wait_s(self, idle_for_s: float) -> float | None:
        """Longest useful wait before complete() may change without new bytes, or None."""
        ...

    def response(self) -> dict[str, object]:
        """The reply as a response object."""
        ...


@dataclass
class DirtyPort:
    """Why the port is dirty, and the reply it may still owe."""

    # Ends "after …" in messages: "the port was opened", "command X timed out".
    cause: str
    owed: OwedReply | None = None
    # The command the owed reply answers; its late reply is kept with it.
    owed_by: str | None = None
    # Waited at least this long for the owed reply, even beyond the device's settle time: what
    # is left of the timeout of a command a previous worker had in flight.
    at_least_s: float = 0.0
    # Once drained, write the device's reset sequence (options.reset), if it has one: the
    # device may be stuck in the command that left it dirty.
    reset: bool = False


def drain_until_clean(
    transport: Transport,
    dirty: DirtyPort,
    profile: DeviceProfile,
    device: str,
    on_noise: NoiseSink,
    on_late_reply: LateReplySink,
) -> None:
    """Drain a dirty port until it is quiet and owes nothing; PortNotClean if it stays busy.

    Everything drained goes to `on_noise`; an owed reply that completes also goes to
    `on_late_reply`. An owed reply that never comes while the line stays quiet to the end of
    the grace is given up: the device evidently dropped it.
    """
    if profile.settle_s == 0:
        # The device's options say not to wait: only what has already arrived is stale.
        waiting = transport.drain()
        if waiting:
            on_noise(waiting)
        return
    grace_s = max(profile.settle_s, dirty.at_least_s)
    started = time.monotonic()
    deadline = started + grace_s
    last_rx = started
    owed = dirty.owed
    while True:
        now = time.monotonic()
        quiet_s = now - last_rx
        if owed is not None and owed.complete(quiet_s):
            if dirty.owed_by:
                on_late_reply(dirty.owed_by, owed.response())
            owed = None
        if owed is None and quiet_s >= profile.idle_s:
            return
        if now >= deadline:
            if quiet_s >= profile.idle_s:
                log.warning(
                    "owed reply never came",
                    extra={"device": device, "command": dirty.owed_by, "waited_s": grace_s},
                )
                return
            raise PortNotClean(
                f"device {device} kept sending for {grace_s:g} s after {dirty.cause}; "
                "the port is not clean, so this command was not written"
            )
        waits = [deadline - now]
        if quiet_s < profile.idle_s:
            waits.append(profile.idle_s - quiet_s)
        owed_wait = owed.wait_s(quiet_s) if owed is not None else None
        if owed_wait is not None:
            waits.append(owed_wait)
        chunk = transport.read_some(max(0.0, min(waits)))
        if chunk:
            last_rx = time.monotonic()
            on_noise(chunk)
            if owed is not None:
                owed.feed(chunk)

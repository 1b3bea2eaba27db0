"""The device workers of one host: started when wanted, restarted when they crash, given up on
when they keep crashing, stopped when no longer wanted.

A worker that exits on its own is restarted after 1, 2, 4 … s; the fifth crash within a
minute ends the tries: the device's presence becomes `failed`, with the exit status and the
last lines of the worker's log as its error. A change of the device's settings, or turning it
off and on, tries again.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tasks.presence_store import PresenceStore
from worker_host.worker_child import WorkerLaunch, WorkerProcess, WorkerStarter

log = logging.getLogger("hwq.host")

# Crashes within this window count towards giving up; this many of them ends the tries.
CRASH_WINDOW_S = 60.0
MAX_CRASHES = 5
# The pause before restarting a crashed worker: the first, doubling up to the longest.
FIRST_BACKOFF_S = 1.0
LONGEST_BACKOFF_S = 30.0
# A worker told to stop gets this long to finish its command and release the port.
STOP_GRACE_S = 20.0
# Lines of the worker's log kept with a failure.
TAIL_LINES = 15


@dataclass
class WorkerSlot:
    """One wanted device worker: its settings' digest, its process, its recent crashes."""

    device: str
    digest: str
    log_path: Path
    process: WorkerProcess | None = None
    crashes: deque[float] = field(default_factory=deque)
    start_at: float = 0.0
    failed: bool = False
    stop_deadline: float | None = None
    # The port its device's address names: a renamed device's new worker waits for the old.
    port: str = ""


class WorkerSupervisor:
    """Keeps the host's device workers as wanted; never raises for a worker's fault."""

    def __init__(
        self,
        starter: WorkerStarter,
        presence: PresenceStore,
        launch_for: Callable[[str], WorkerLaunch],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.starter = starter
        self.presence = presence
        self.launch_for = launch_for
        self.clock = clock
        self.slots: dict[str, WorkerSlot] = {}
        # Workers told to stop and not yet gone; a device's new worker waits for its old one.
        self.stopping: list[WorkerSlot] = []

    def running(self) -> dict[str, int]:
        """Device → pid of each worker running now, stopping ones excluded."""
        return {
            name: slot.process.pid
            for name, slot in self.slots.items()
            if slot.process is not None and slot.process.pid is not None
        }

    def reconcile(self, wanted: dict[str, str], ports: dict[str, str] | None = None) -> None:
        """Make the workers those of `wanted` (device → digest of its settings); `ports`
        (device → address) keeps a new worker from opening a port an old one still holds."""
        ports = ports or {}
        for name, slot in list(self.slots.items()):
            if wanted.get(name) != slot.digest:
                reason = "not wanted here" if name not in wanted else "its settings changed"
                log.info("stopping device worker: %s", reason, extra={"device": name})
                self._retire(self.slots.pop(name))
        for name, digest in wanted.items():
            if name not in self.slots:
                log_path = self.launch_for(name).log_path
                self.slots[name] = WorkerSlot(name, digest, log_path, port=ports.get(name, ""))
                # A new digest, or a device turned on again, earns a fresh try.
                self._clear_failed(name)
        self.supervise()

    def supervise(self) -> None:
        """Reap exited workers, restart crashed ones when due, start waiting ones."""
        now = self.clock()
        self._reap_stopping(now)
        for slot in self.slots.values():
            if slot.process is not None:
                status = slot.process.exit_status()
                if status is None:
                    continue
                slot.process = None
                self._crashed(slot, status, now)
            if slot.failed or now < slot.start_at or self._old_worker_alive(slot):
                continue
            self._start(slot, now)

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every worker: SIGTERM, then SIGKILL after the grace; returns once all are gone."""
        for name in list(self.slots):
            self._retire(self.slots.pop(name), grace_s)
        while self.stopping:
            self._reap_stopping(self.clock())
            time.sleep(0.05)

    def _retire(self, slot: WorkerSlot, grace_s: float = STOP_GRACE_S) -> None:
        if slot.process is None:
            return
        with contextlib.suppress(OSError):  # already gone
            slot.process.terminate()
        slot.stop_deadline = self.clock() + grace_s
        self.stopping.append(slot)

    def _reap_stopping(self, now: float) -> None:
        for slot in list(self.stopping):
            process = slot.process
            if process is None or process.exit_status() is not None:
                self.stopping.remove(slot)
                continue
            if slot.stop_deadline is not None and now >= slot.stop_deadline:
                log.warning("device worker did not stop in time; killing it",
                            extra={"device": slot.device, "pid": process.pid})  # fmt: skip
                process.kill()
                slot.stop_deadline = None

    def _old_worker_alive(self, slot: WorkerSlot) -> bool:
        # Two workers of one device, or of one port (a device renamed), would fight over it.
        return any(
            old.device == slot.device or (slot.port and old.port == slot.port)
            for old in self.stopping
        )

    def _start(self, slot: WorkerSlot, now: float) -> None:
        try:
            slot.process = self.starter.start(self.launch_for(slot.device))
        except Exception as e:  # a failed start counts as a crash, never ends the agent
            log.exception("device worker did not start", extra={"device": slot.device})
            self._crashed(slot, None, now, f"could not start: {e}")
            return
        log.info("device worker started", extra={"device": slot.device, "pid": slot.process.pid})

    def _crashed(self, slot: WorkerSlot, status: int | None, now: float, why: str = "") -> None:
        reason = why or describe_exit(status)
        self._count_crash(slot.device)
        slot.crashes.append(now)
        while slot.crashes and now - slot.crashes[0] > CRASH_WINDOW_S:
            slot.crashes.popleft()
        count = len(slot.crashes)
        if count >= MAX_CRASHES:
            slot.failed = True
            error = (
                f"device worker {reason}; gave up after {count} crashes within "
                f"{CRASH_WINDOW_S:g} s. Last lines of {slot.log_path}:\n{tail(slot.log_path)}"
            )
            log.error("device worker failed; not restarting it",
                      extra={"device": slot.device, "reason": reason})  # fmt: skip
            self._mark_failed(slot.device, error)
            return
        delay = min(FIRST_BACKOFF_S * 2 ** (count - 1), LONGEST_BACKOFF_S)
        slot.start_at = now + delay
        log.warning("device worker crashed; restarting it",
                    extra={"device": slot.device, "reason": reason, "in_s": delay})  # fmt: skip

    def _count_crash(self, device: str) -> None:
        try:
            self.presence.count_crash(device)
        except redis.RedisError as e:
            log.warning("crash not counted", extra={"device": device, "error": str(e)})

    def _mark_failed(self, device: str, error: str) -> None:
        try:
            self.presence.mark_failed(device, error)
        except redis.RedisError as e:
            log.warning("failure not recorded", extra={"device": device, "error": str(e)})

    def _clear_failed(self, device: str) -> None:
        try:
            self.presence.clear_failed(device)
        except redis.RedisError as e:
            log.warning("failure not cleared", extra={"device": device, "error": str(e)})


def describe_exit(status: int | None) -> str:
    """How a worker ended, in words: its exit status, or the signal that ended it."""
    if status is None:
        return "ended"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of a log file ('' if there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

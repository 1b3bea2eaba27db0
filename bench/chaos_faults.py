"""The chaos run's faults: SIGKILL a process of the stack (or Redis), then start it again.

Every start happens on the thread that runs the faults, which must be the main thread:
the embedded Redis asks the kernel to end it when the thread that started it ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.local_stack import Stack
from hwq.embedded_redis import EmbeddedRedis

# How long a restarted process gets to answer again before the run notes it did not.
RESTART_TIMEOUT_S = 60.0
# The roles a fault picks from; "device" means one device worker chosen at random.
FAULT_TARGETS = ("device", "server-worker", "api", "redis")
# The API and Redis are killed while a submission is under way if one comes within this
# long: the moments a kill can split a submission, which idle moments never test.
BUSY_WAIT_S = 1.0


class RestartableRedis(EmbeddedRedis):
    """The embedded Redis, killed with SIGKILL and started again on the same port.

    With `keeps_data` it writes an append-only file, as a deployment with `appendonly yes`
    does (fsync once a second, so a kill may lose the last second); without, every kill
    loses all its data.
    """

    def __init__(self, data_dir: Path, keeps_data: bool = True) -> None:
        super().__init__(data_dir, persist=keeps_data)

    def kill(self) -> None:
        """SIGKILL the server: no final write of its append-only file."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self.persist:
            # Nothing should survive a kill of a Redis without persistence, not even a
            # snapshot an orderly stop might have left.
            for leftover in ("appendonlydir", "dump.rdb"):
                path = self.data_dir / leftover
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, children first (read from /proc; Linux only)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
                found.extend(int(child) for child in children)
                pending.extend(int(child) for child in children)
    return found


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child of ours and everything it started, as a crash of its host would."""
    for pid in [*descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


@dataclass
class Fault:
    """One fault the run made: what was killed, when, for how long, and whether it came back."""

    at_s: float
    target: str
    down_s: float
    back: bool = False
    back_after_s: float = 0.0


@dataclass
class FaultInjector:
    """Kills and restarts the stack's processes and its Redis."""

    stack: Stack
    redis_server: RestartableRedis
    devices: list[str]
    rng: random.Random
    # Whether a submission is under way now.
    submitting: Callable[[], bool] = lambda: False
    started_at: float = field(default_factory=time.monotonic)
    faults: list[Fault] = field(default_factory=list)
    # Processes that exited without being killed, with the tail of their log.
    unexpected_exits: list[tuple[str, int, str]] = field(default_factory=list)

    def role_args(self, name: str) -> tuple[tuple[str, ...], bool]:
        """The `hwq` arguments that start the stack's process `name`, and if it gets SQL."""
        if name == "api":
            return ("api", "--host", "127.0.0.1", "--port", str(self.stack.api_port)), True
        if name == "server-worker":
            return ("server-worker",), True
        device = name.removeprefix("device-")
        return ("device-worker", device), False

    def inject(self, target: str, down_s: float) -> Fault:
        """Kill `target` (a role of FAULT_TARGETS), wait `down_s`, and start it again."""
        name = f"device-{self.rng.choice(self.devices)}" if target == "device" else target
        if name in ("api", "redis"):
            busy_by = time.monotonic() + BUSY_WAIT_S
            while not self.submitting() and time.monotonic() < busy_by:
                time.sleep(0.001)
        fault = Fault(round(time.monotonic() - self.started_at, 2), name, round(down_s, 2))
        self.faults.append(fault)
        if name == "redis":
            self.redis_server.kill()
        else:
            kill_tree(self.stack.processes.pop(name))
        time.sleep(down_s)
        restarted = time.monotonic()
        fault.back = self._start(name)
        fault.back_after_s = round(time.monotonic() - restarted, 2)
        return fault

    def _start(self, name: str) -> bool:
        if name == "redis":
            self.redis_server.start()
            return True
        args, with_database = self.role_args(name)
        self.stack.spawn(name, *args, with_database=with_database)
        if name == "api":
            return self._wait(lambda: self.stack.request("GET", "/health", timeout=5).status == 200)
        return True

    def _wait(self, check: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, redis.RedisError):
                if check():
                    return True
            time.sleep(0.2)
        return False

    def revive_exited(self) -> None:
        """Note and restart every process of the stack that exited on its own."""
        for name, process in list(self.stack.processes.items()):
            code = process.poll()
            if code is None:
                continue
            self.unexpected_exits.append((name, code, self.stack.log(name)[-2000:]))
            self.stack.processes.pop(name)
            if not name.startswith("sim-"):  # a simulator is the hardware: not restarted
                self._start(name)

    def all_back(self) -> bool:
        """Whether the API answers and every device worker is online."""
        return self._wait(
            lambda: all(self.stack.device(device)["online"] for device in self.devices)
        )

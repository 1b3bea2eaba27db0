"""Starts and supervises child processes for `hwq up`; stops every one of them on exit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tasks.parent_death import signal_on_parent_death

log = logging.getLogger("hwq.up")

# A child that exits is started again after this pause, at most this many times.
RESTART_DELAY_S = 1.0
MAX_RESTARTS = 5
# How long children get to stop after SIGTERM before they are killed.
STOP_TIMEOUT_S = 15.0


def end_with_parent() -> None:
    """SIGTERM this process when its parent dies, however the parent dies (Linux only)."""
    # Where it cannot (not Linux), an orderly stop still stops every child.
    signal_on_parent_death(signal.SIGTERM)


def die_with_parent() -> None:
    """In a child about to exec: SIGTERM it when its parent dies, however the parent dies.

    Also puts the child in its own process group, so a Ctrl-C reaches only the parent,
    which then stops its children in order.
    """
    end_with_parent()
    os.setpgrp()


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        """Start (or restart) the process, appending its output to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.started_at = time.monotonic()

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last lines of the child's log, to show why it stopped."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Children started in order and stopped in reverse order."""

    def __init__(self, log_dir: Path, report: Callable[[str], None]) -> None:
        self.log_dir = log_dir
        self.report = report
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        """Start `hwq ARGS…` as a child named `name`."""
        argv = [sys.executable, "-m", "hwq.cli", *args]
        child = Child(name, argv, env, self.log_dir / f"{name}.log")
        child.start()
        self.children.append(child)
        return child

    def check(self) -> None:
        """Restart children that died, a bounded number of times."""
        for child in self.children:
            if child.running() or child.process is None:
                continue
            code = child.process.returncode
            if child.restarts >= MAX_RESTARTS:
                continue
            child.restarts += 1
            self.report(
                f"{child.name} exited with status {code}; restarting "
                f"({child.restarts}/{MAX_RESTARTS}). Last lines of {child.log_path}:\n"
                f"{child.tail()}"
            )
            time.sleep(RESTART_DELAY_S)
            child.start()

    def stop_all(self) -> None:
        """SIGTERM every child, newest first, then kill what is still running."""
        for child in reversed(self.children):
            if child.running() and child.process is not None:
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("child did not stop; killing it", extra={"child": child.name})
                child.process.kill()
                child.process.wait()

"""A device worker started by its host agent: forked from a warm interpreter, or a subprocess.

Either way the child runs what `hwq device-worker NAME` runs, writes its own log file, and
ends when the process that started it ends, however that one ends.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Protocol

from serial.tools.list_ports_common import ListPortInfo

from config import Settings
from config.logging import configure_logging
from tasks.parent_death import signal_on_parent_death
from worker_host.cpu_placement import pin_device_worker

# The module a fork server imports before it forks any worker.
WARM_IMPORTS = "worker_host.warm_imports"


@dataclass(frozen=True)
class WorkerLaunch:
    """What one device worker needs to start: its device, settings, log file, ports folder."""

    device: str
    settings: Settings
    log_path: Path
    ports_dir: Path | None = None


class WorkerProcess(Protocol):
    """A started device worker, whichever way it was started."""

    @property
    def pid(self) -> int | None:
        """The process id."""
        ...

    def exit_status(self) -> int | None:
        """None while it runs; then its exit status, negative for the signal that ended it."""
        ...

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM): it finishes its command, releases the port, exits."""
        ...

    def kill(self) -> None:
        """Stop it at once (SIGKILL)."""
        ...


class ForkedWorker:
    """A device worker forked by the fork server."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        """The process id."""
        return self.process.pid

    def exit_status(self) -> int | None:
        """None while it runs, then its exit code (negative: the signal)."""
        return self.process.exitcode

    def terminate(self) -> None:
        """SIGTERM."""
        self.process.terminate()

    def kill(self) -> None:
        """SIGKILL."""
        self.process.kill()


class SubprocessWorker:
    """A device worker run as `hwq device-worker NAME`, where forking is not available."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        """The process id."""
        return self.process.pid

    def exit_status(self) -> int | None:
        """None while it runs, then its exit code (negative: the signal)."""
        return self.process.poll()

    def terminate(self) -> None:
        """SIGTERM."""
        self.process.terminate()

    def kill(self) -> None:
        """SIGKILL."""
        self.process.kill()


class WorkerStarter(Protocol):
    """Starts device workers."""

    def start(self, launch: WorkerLaunch) -> WorkerProcess:
        """Start one device worker."""
        ...


class ForkServerStarter:
    """Forks device workers from a fork server that has imported everything they need.

    The fork server is a fresh interpreter started before the agent has any thread or
    connection, so a fork inherits neither; it ends when the agent ends, and its children get
    SIGTERM when it does.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([WARM_IMPORTS])
        self.context: BaseContext = context

    def warm_up(self) -> None:
        """Start the fork server now, so its imports run while the agent starts."""
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def start(self, launch: WorkerLaunch) -> WorkerProcess:
        """Fork a device worker."""
        process = self.context.Process(  # type: ignore[attr-defined]
            target=run_forked_worker, args=(launch,), name=f"device-{launch.device}"
        )
        process.start()
        return ForkedWorker(process)


class SubprocessStarter:
    """Starts each device worker as a new `hwq device-worker` process."""

    def start(self, launch: WorkerLaunch) -> WorkerProcess:
        """Start `python -m hwq.cli device-worker NAME`, its output in its log file."""
        env = {**os.environ, "HWQ_HOSTNAME": launch.settings.hostname}
        argv = [sys.executable, "-m", "hwq.cli", "device-worker", launch.device]
        if launch.ports_dir is not None:
            argv += ["--ports-dir", str(launch.ports_dir)]
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with launch.log_path.open("ab") as output:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                preexec_fn=_end_with_parent,
            )  # fmt: skip
        return SubprocessWorker(process)


def _end_with_parent() -> None:
    signal_on_parent_death(signal.SIGTERM)
    # Its own process group: a Ctrl-C meant for the agent reaches only the agent, which then
    # stops its workers in order.
    os.setpgrp()


def default_starter() -> WorkerStarter:
    """Forking from a warm fork server where the platform has one, else subprocesses."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        return ForkServerStarter()
    return SubprocessStarter()


def run_forked_worker(launch: WorkerLaunch) -> None:
    """In a forked child: become the device worker of `launch.device`."""
    parent = os.getppid()
    _let_fork_server_end_with_agent()
    _end_with_parent()
    if os.getppid() != parent:
        # The fork server ended between the fork and the line above.
        os._exit(1)
    _log_to(launch.log_path)
    # Before any thread starts: the worker's threads inherit its CPU.
    pin_device_worker(launch.settings, launch.device)
    run_device_worker(launch)


def _let_fork_server_end_with_agent() -> None:
    """Close this child's copy of the fork server's "agent alive" pipe.

    The fork server ends when every holder of that pipe's write end has closed it, and hands
    a copy to each child; were the children to keep theirs, an agent killed with SIGKILL would
    leave the fork server, and so its workers, running. With only the agent holding it, the
    fork server ends with the agent, and its children get SIGTERM (`_end_with_parent`).
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


def _log_to(path: Path) -> None:
    """Send this process's stdout and stderr to its own log file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_device_worker(launch: WorkerLaunch, overrides: dict[str, object] | None = None) -> None:
    """Serve one device until told to stop: what `hwq device-worker NAME` runs."""
    from tasks.celery_app import create_celery
    from worker_host.device_worker import device_worker_argv, install_device_runtime
    from worker_host.port_discovery import discover

    settings = launch.settings
    configure_logging(
        settings.log_level, settings.log_json, role="device-worker", device=launch.device
    )
    ports_dir = launch.ports_dir

    def ports() -> tuple[ListPortInfo, ...]:
        return discover(ports_dir).ports

    app = create_celery(settings)
    install_device_runtime(app, settings, launch.device, dict(overrides or {}), ports)
    app.worker_main(device_worker_argv(launch.device, settings, settings.log_level))

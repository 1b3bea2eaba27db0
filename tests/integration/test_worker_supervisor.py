"""The supervisor's rules with real processes that exit at once and a clock the test moves:
restarts after 1, 2, 4, 8 s, `failed` in Redis on the fifth crash within a minute with the
exit status and the log's last lines, a fresh try when the settings change, and a worker of
a device no longer wanted stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import redis

from config import Settings
from tasks.live_store import LiveStore
from tasks.presence_store import PresenceStore
from worker_host.worker_child import SubprocessWorker, WorkerLaunch, WorkerProcess
from worker_host.worker_supervisor import WorkerSupervisor


class ScriptStarter:
    """Starts a real process per worker that runs `code`, its output in the worker's log."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, launch: WorkerLaunch) -> WorkerProcess:
        with launch.log_path.open("ab") as output:
            process = subprocess.Popen([sys.executable, "-c", self.code], stdout=output,
                                       stderr=subprocess.STDOUT)  # fmt: skip
        self.started.append(process)
        return SubprocessWorker(process)

    def wait_all(self) -> None:
        for process in self.started:
            process.wait(timeout=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _supervisor(tmp_path: Path, client: redis.Redis, prefix: str, code: str):  # type: ignore[no-untyped-def]
    presence = PresenceStore(LiveStore(client, prefix))
    starter, clock = ScriptStarter(code), Clock()
    settings = Settings(redis_url="redis://unused", key_prefix=prefix)

    def launch(device: str) -> WorkerLaunch:
        return WorkerLaunch(device, settings, tmp_path / f"device-{device}.log")

    return WorkerSupervisor(starter, presence, launch, clock), starter, clock, presence


def test_backoff_then_failed_with_reason_then_a_fresh_try(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    code = "import sys; print('bad setting: idle_ms'); sys.exit(3)"
    supervisor, starter, clock, presence = _supervisor(tmp_path, redis_client, key_prefix, code)
    supervisor.reconcile({"dev": "digest-1"})
    for pause in (1, 2, 4, 8):
        starter.wait_all()
        supervisor.supervise()  # sees the crash, schedules the restart
        count = len(starter.started)
        clock.now += pause - 0.01
        supervisor.supervise()
        assert len(starter.started) == count, "restarted before its backoff"
        clock.now += 0.01
        supervisor.supervise()
        assert len(starter.started) == count + 1
    starter.wait_all()
    supervisor.supervise()
    stored, error = presence.presence("dev")
    assert stored == "failed"
    assert error is not None
    assert "exited with status 3" in error and "bad setting: idle_ms" in error
    clock.now += 100
    supervisor.supervise()
    assert len(starter.started) == 5, "a failed worker was started again"

    supervisor.reconcile({"dev": "digest-2"})
    assert presence.presence("dev") == (None, None)
    assert len(starter.started) == 6
    starter.wait_all()


def test_a_worker_no_longer_wanted_is_stopped(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    code = "import time; time.sleep(60)"
    supervisor, starter, _, _ = _supervisor(tmp_path, redis_client, key_prefix, code)
    supervisor.reconcile({"a": "1", "b": "1"})
    assert sorted(supervisor.running()) == ["a", "b"]
    supervisor.reconcile({"b": "1"})
    deadline = time.monotonic() + 30
    while supervisor.stopping and time.monotonic() < deadline:
        supervisor.supervise()
        time.sleep(0.05)
    assert sorted(supervisor.running()) == ["b"]
    assert starter.started[0].returncode is not None
    supervisor.stop_all()
    assert all(process.poll() is not None for process in starter.started)


def test_a_renamed_device_s_worker_waits_for_the_old_one_to_let_go_of_the_port(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    # The old worker takes a moment to finish and release the port after SIGTERM.
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0)))\n"
        "time.sleep(60)\n"
    )
    supervisor, starter, _, _ = _supervisor(tmp_path, redis_client, key_prefix, code)
    supervisor.reconcile({"old": "1", "other": "1"}, {"old": "/dev/ttyUSB0", "other": "/dev/x"})
    time.sleep(0.5)  # the handler is installed

    supervisor.reconcile({"new": "2", "other": "1"}, {"new": "/dev/ttyUSB0", "other": "/dev/x"})

    assert "new" not in supervisor.running(), "started while the old worker held the port"
    deadline = time.monotonic() + 30
    while "new" not in supervisor.running() and time.monotonic() < deadline:
        supervisor.supervise()
        time.sleep(0.05)
    assert starter.started[0].returncode == 0, "the new worker started before the old one ended"
    assert sorted(supervisor.running()) == ["new", "other"]
    supervisor.stop_all()

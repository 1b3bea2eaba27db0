"""A local stack of real hwq processes, each started as `hwq <role>` and driven over HTTP.

End-to-end tests and benchmarks use it; it needs only a Redis URL and a folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness_http import KeepAliveHttp, Reply, outgoing_request
from hwq.embedded_redis import free_port

# Starting a Celery worker takes a few seconds on a busy two-core machine.
START_TIMEOUT_S = 60.0


@dataclass
class Stack:
    """hwq's processes on this machine: API, server worker, simulators and device workers."""

    home: Path
    redis_url: str
    key_prefix: str
    extra_env: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    admin_token: str = ""
    _http: KeepAliveHttp | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def env(self, with_database: bool = True) -> dict[str, str]:
        """The environment of a child process."""
        env = {
            **os.environ,
            "HWQ_HOME": str(self.home),
            "HWQ_REDIS_URL": self.redis_url,
            "HWQ_KEY_PREFIX": self.key_prefix,
            "HWQ_HOSTNAME": "e2e",
            "HWQ_API_THREADS": "32",
            **self.extra_env,
        }
        env.pop("HWQ_CONFIG", None)
        if not with_database:
            env.pop("HWQ_DATABASE_URL", None)
        return env

    def hwq(self, *args: str, check: bool = True) -> str:
        """Run a short `hwq` command and return what it printed."""
        result = subprocess.run(
            [sys.executable, "-m", "hwq.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"hwq {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def spawn(self, name: str, *args: str, with_database: bool = True) -> None:
        """Start `hwq ARGS…` in the background, its output in HOME/logs/NAME.log."""
        log_dir = self.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{name}.log").open("ab") as output:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "hwq.cli", *args],
                env=self.env(with_database),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self, name: str) -> str:
        """A child's output so far."""
        return (self.home / "logs" / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one child and wait for it."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
        _reap(process)

    def start(self) -> Stack:
        """Migrate, make an admin token, and start the API and the server worker."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.hwq("migrate")
        self.admin_token = self.hwq("token", "create", "--role", "admin", "--name", "e2e").strip()
        self.spawn("server-worker", "server-worker")
        self.spawn("api", "api", "--host", "127.0.0.1", "--port", str(self.api_port))
        self.wait_for(lambda: self.request("GET", "/health").status == 200, "the API")
        return self

    def add_sim_device(self, name: str, kind: str = "scpi", worker: bool = True) -> None:
        """A simulator on a pty, registered as a device, with its worker."""
        link = self.home / "dev" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        self.spawn(f"sim-{name}", "sim", "--kind", kind, "--name", name, "--home",
                   str(self.home), "--link", str(link), with_database=False)  # fmt: skip
        self.wait_for(link.exists, f"simulator {name}")
        codec = "frame" if kind == "frame" else "line"
        reply = self.request(
            "POST", "/devices", body={"name": name, "address": str(link), "codec": codec}
        )
        assert reply.status == 201, reply.body
        if worker:
            self.start_worker(name)

    def start_worker(self, name: str) -> None:
        """Start a device's worker and wait until it is online."""
        self.spawn(f"device-{name}", "device-worker", name, with_database=False)
        self.wait_for(lambda: self.device(name)["online"], f"worker of {name}")

    def device(self, name: str) -> dict[str, Any]:
        """A device as the API shows it."""
        reply = self.request("GET", f"/devices/{name}")
        assert reply.status == 200, reply.body
        return dict(reply.body)

    def sim_log(self, name: str) -> str:
        """Every line the simulator received."""
        path = self.home / "sim" / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        timeout: float = 90.0,
        body: object = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An authenticated API request (admin unless another token is given), kept alive."""
        data, outgoing = outgoing_request(token or self.admin_token, body, raw, content_type)
        headers = {**outgoing, **(headers or {})}
        if self._http is None or self._http.port != self.api_port:
            self._http = KeepAliveHttp("127.0.0.1", self.api_port)
        return self._http.request(method, "/api/v1" + path, headers, data, timeout)

    def submit(self, device: str, payload: str, **options: Any) -> str:
        """Submit a line command and return its id."""
        reply = self.request(
            "POST", f"/devices/{device}/commands", body={"kind": "line", "payload": payload,
                                                         **options}
        )  # fmt: skip
        assert reply.status == 202, reply.body
        return str(reply.body["id"])

    def wait(self, command_id: str, seconds: float = 30) -> dict[str, Any]:
        """Long-poll a command until it settles."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = max(1, min(60, int(deadline - time.monotonic())))
            body = self.request("GET", f"/commands/{command_id}?wait={remaining}").body
            if body["state"] in TERMINAL or time.monotonic() > deadline:
                return dict(body)

    def wait_for(self, check: Any, what: str, timeout: float = START_TIMEOUT_S) -> None:
        """Poll `check` until it is true; on timeout, fail with the children's logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (OSError, AssertionError, KeyError, TypeError):
                pass
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited early:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)
        logs = "\n".join(f"--- {n}\n{self.log(n)[-1500:]}" for n in self.processes)
        raise AssertionError(f"{what} did not come up in {timeout} s\n{logs}")

    def close(self) -> None:
        """Stop every child: all are asked at once, then each is waited for."""
        stopping = list(self.processes.values())
        self.processes.clear()
        for process in stopping:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in stopping:
            _reap(process)


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a child told to stop; kill it if it takes more than 30 s."""
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


TERMINAL = {"done", "failed", "timed_out", "expired", "cancelled", "interrupted"}


@contextmanager
def running_stack(
    home: Path, redis_url: str, key_prefix: str | None = None, **extra_env: str
) -> Iterator[Stack]:
    """A started stack in `home`, stopped again when the block ends, however it ends."""
    stack = Stack(
        home=home,
        redis_url=redis_url,
        key_prefix=key_prefix or f"stack-{uuid.uuid4().hex[:8]}",
        extra_env=dict(extra_env),
    )
    try:
        yield stack.start()
    finally:
        stack.close()


@dataclass
class UpRun:
    """A `hwq up` started in the background: its home, API, banner and process."""

    home: Path
    api_port: int
    process: subprocess.Popen[str]
    banner: str = ""

    @property
    def base(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    @property
    def admin_token(self) -> str:
        """The admin token `hwq up` wrote to its home."""
        return (self.home / "admin.token").read_text().strip()


@contextmanager
def hwq_up(home: Path, env: dict[str, str], *args: str) -> Iterator[UpRun]:
    """`hwq up --home HOME ARGS…` until its banner is printed; Ctrl-C'd when the block ends."""
    api_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hwq.cli", "up", "--home", str(home),
         "--port", str(api_port), "--flower-port", str(free_port()),
         "--gateway-port", str(free_port()), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    run = UpRun(home, api_port, process)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        else:
            raise AssertionError("hwq up exited before it was up:\n" + "".join(lines))
        run.banner = "".join(lines)
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

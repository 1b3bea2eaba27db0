"""`hwq up` as a user starts it, for the benchmarks of the live stream: its API, gateway, host
agent and embedded Redis, and a way to add devices to the host agent it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness_http import KeepAliveHttp, Reply, outgoing_request
from bench.procfs import process_tree, resident_bytes
from hwq.embedded_redis import free_port

UP_TIMEOUT_S = 180.0
HOSTNAME = "benchhost"


@dataclass
class UpProcess:
    """One running `hwq up` and how to reach it."""

    home: Path
    process: subprocess.Popen[str]
    api_port: int
    gateway_port: int
    token: str
    client: KeepAliveHttp

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def request(self, method: str, path: str, body: object = None, timeout: float = 30) -> Reply:
        """A request to the API as the admin, on a kept-alive connection."""
        data, headers = outgoing_request(self.token, body, None, "application/json")
        return self.client.request(method, "/api/v1" + path, headers, data, timeout)

    def wait_online(self, device: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = self.request("GET", f"/devices/{device}")
            if reply.status == 200 and reply.body["online"]:
                return
            time.sleep(0.3)
        raise RuntimeError(f"{device} never came online")

    def role_pids(self, role: str) -> list[int]:
        """The processes of one of `hwq up`'s children (`api`, `gateway`) and their own."""
        for pid in process_tree(self.process.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"hwq.cli" in argv and role.encode() in argv:
                return process_tree(pid)
        raise RuntimeError(f"no {role} process under hwq up")

    def resident(self, role: str) -> int:
        """Bytes resident in a role's processes."""
        return sum(resident_bytes(pid) for pid in self.role_pids(role))


@contextmanager
def running_up(home: Path, sims: int = 1, **extra_env: str) -> Iterator[UpProcess]:
    """`hwq up --sim N` in `home` until the block ends, then Ctrl-C'd."""
    api_port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWQ_")}
    env.update({"HWQ_HOSTNAME": HOSTNAME, "HWQ_LOG_LEVEL": "WARNING", **extra_env})
    process = subprocess.Popen(
        [sys.executable, "-m", "hwq.cli", "up", "--sim", str(sims), "--home", str(home),
         "--port", str(api_port), "--flower-port", str(free_port()),
         "--gateway-port", str(gateway_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        said_up = False
        deadline = time.monotonic() + UP_TIMEOUT_S
        assert process.stdout is not None
        for line in process.stdout:
            said_up = "Press Ctrl-C" in line
            if said_up or time.monotonic() > deadline:
                break
        if process.poll() is not None or not said_up:
            raise RuntimeError("hwq up did not start")
        # What it says from now on is read and dropped, so a full pipe never stops it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        up = UpProcess(home, process, api_port, gateway_port,
                       (home / "admin.token").read_text().strip(),
                       KeepAliveHttp("127.0.0.1", api_port))  # fmt: skip
        for n in range(sims):
            up.wait_online(f"sim{n}")
        yield up
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

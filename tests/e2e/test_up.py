"""`hwq up --sim 2` as a person runs it: replies, Flower, history across restarts, clean stop."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness_http import http
from bench.ordered_socketio import OrderedClient as in_order_client
from hwq.embedded_redis import free_port

HOSTNAME = "uphost"


class Up:
    """One `hwq up` process and what it wrote to its home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.api_port = free_port()
        self.flower_port = free_port()
        self.gateway_port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.redis_port = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HWQ_")}
        env["HWQ_HOSTNAME"] = HOSTNAME
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hwq.cli", "up", "--sim", "2", "--home",
             str(self.home), "--port", str(self.api_port), "--flower-port",
             str(self.flower_port), "--gateway-port", str(self.gateway_port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip().startswith("Redis:"):
                self.redis_port = int(line.rsplit(":", 1)[1].split("/")[0])
            if "Press Ctrl-C" in line:
                break
            assert time.monotonic() < deadline, "hwq up did not say it was up"
        else:
            raise AssertionError("hwq up exited before it was up")
        self.wait_online("sim0")
        self.wait_online("sim1")

    @property
    def token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def wait_online(self, device: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reply = http("GET", f"{self.base}/devices/{device}", token=self.token)
            if reply.status == 200 and reply.body["online"]:
                return
            time.sleep(0.3)
        raise AssertionError(f"{device} never came online")

    def run(self, device: str, payload: str) -> dict:  # type: ignore[type-arg]
        reply = http("POST", f"{self.base}/devices/{device}/commands", token=self.token,
                     body={"kind": "line", "payload": payload})  # fmt: skip
        assert reply.status == 202, reply.body
        assert reply.headers["Location"] == f"/api/v1/commands/{reply.body['id']}"
        done = http("GET", f"{self.base}/commands/{reply.body['id']}?wait=10", token=self.token)
        return dict(done.body)

    def children(self) -> list[int]:
        """Processes whose command line names this home folder (what `hwq up` started)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or self.process and int(entry.name) == self.process.pid:
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if str(self.home) in cmdline or str(self.home).encode() in environ:
                pids.append(int(entry.name))
        return pids

    def interrupt(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "home")
    yield running
    if running.process and running.process.poll() is None:
        running.process.kill()
    for pid in running.children():
        os.kill(pid, signal.SIGKILL)


def test_up_serves_two_instruments_flower_and_keeps_history(up: Up) -> None:
    up.start()
    first = up.run("sim0", "*IDN?")
    assert first["state"] == "done" and first["response"]["text"].startswith("HWQ,SIM,sim0")
    second = up.run("sim1", "ECHO from sim1")
    assert second["response"]["text"] == "from sim1"

    cli = subprocess.run(
        [sys.executable, "-m", "hwq.cli", "run", "sim0", "*IDN?"],
        env={**os.environ, "HWQ_URL": f"http://127.0.0.1:{up.api_port}", "HWQ_TOKEN": up.token},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("HWQ,SIM,sim0")

    login = (up.home / "flower.auth").read_text().strip()
    flower = f"http://127.0.0.1:{up.flower_port}"
    assert http("GET", f"{flower}/api/workers").status == 401
    logged_in = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}

    # Flower asks the workers over the broker and lists those that answered in time; on a
    # busy machine the first broadcast may be answered by only some.
    deadline = time.monotonic() + 30
    while True:
        workers = http("GET", f"{flower}/api/workers?refresh=1", headers=logged_in, timeout=30).body
        wanted = {f"sim0@{HOSTNAME}", f"sim1@{HOSTNAME}"}
        if wanted <= set(workers) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert wanted <= set(workers), f"Flower lists {sorted(workers)}"
    deadline = time.monotonic() + 20
    while True:
        listing = http(
            "GET", f"{flower}/api/tasks?workername=sim0@{HOSTNAME}", headers=logged_in, timeout=30
        )
        tasks = listing.body
        if first["id"] in tasks or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert first["id"] in tasks, "Flower does not show the command under sim0's worker"
    assert login.split(":", 1)[1] not in json.dumps(listing.body)

    # The Socket.IO gateway answers with the same admin token and lists both instruments.
    gateway = in_order_client(reconnection=False)
    gateway.connect(f"http://127.0.0.1:{up.gateway_port}", auth={"token": up.token},
                    transports=["websocket"], wait_timeout=20)  # fmt: skip
    try:
        listing = gateway.call("list-connections", None, timeout=30)
        assert {"sim0", "sim1"} <= {c["name"] for c in listing["connections"]}, listing
        sent = gateway.call(
            "send-raw", {"name": "sim1", "payload": "ECHO via gateway\n"}, timeout=30
        )
        assert sent["ok"] is True, sent
    finally:
        gateway.disconnect()
    sim_log = up.home / "sim" / "sim1.log"
    deadline = time.monotonic() + 30
    while "ECHO via gateway" not in sim_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ECHO via gateway" in sim_log.read_text()

    assert up.children(), "hwq up started no children?"
    up.interrupt()
    assert up.process is not None and up.process.returncode == 0
    time.sleep(1)
    assert up.children() == [], "processes were left running after Ctrl-C"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", up.redis_port)) != 0, "embedded Redis still up"

    up.start()
    history = http("GET", f"{up.base}/commands?limit=50", token=up.token).body["items"]
    assert {first["id"], second["id"]} <= {c["id"] for c in history}
    kept = http("GET", f"{up.base}/commands/{first['id']}", token=up.token).body
    assert kept["state"] == "done" and kept["response"] == first["response"]
    assert up.run("sim0", "ECHO again")["response"]["text"] == "again"
    up.interrupt()

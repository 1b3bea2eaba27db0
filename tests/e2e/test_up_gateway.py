"""The ancestor's Socket.IO API against `hwq up` as a person runs it: a python-socketio client
drives all seven events with the ancestor's field names on the gateway `hwq up` started, and
receives the rx channel; the gateway's page leads to the API's console."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from test_up import Up

from bench.ordered_socketio import OrderedClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
ACK_TIMEOUT_S = 30


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = Up(tmp_path_factory.mktemp("up-gateway") / "home")
    running.start()
    yield running
    running.interrupt()
    for pid in running.children():
        os.kill(pid, signal.SIGKILL)


def call(client: socketio.Client, event: str, data: object = None) -> dict[str, Any]:
    answer = client.call(event, data, timeout=ACK_TIMEOUT_S)
    assert isinstance(answer, dict) and answer.get("ok") is True, (event, answer)
    return answer


class RxChannel:
    """What one client received on the event named after a connection."""

    def __init__(self, client: socketio.Client, name: str) -> None:
        self.chunks: list[bytes] = []
        self.arrived = threading.Condition()
        client.on(name, self._take)

    def _take(self, data: bytes) -> None:
        with self.arrived:
            self.chunks.append(bytes(data))
            self.arrived.notify_all()

    def has(self, wanted: bytes, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: wanted in b"".join(self.chunks), timeout)


def test_every_ancestor_event_against_hwq_up(up: Up, tmp_path: Path) -> None:
    gateway = f"http://127.0.0.1:{up.gateway_port}"
    client = OrderedClient(reconnection=False)
    client.connect(gateway, auth={"token": up.token}, wait_timeout=20)
    frame_sim: subprocess.Popen[bytes] | None = None
    try:
        sim0 = RxChannel(client, "sim0")
        devices = call(client, "list-devices")
        assert "uphost" in {h["name"] for h in devices["hosts"]}, devices
        names = {c["name"] for c in call(client, "list-connections")["connections"]}
        assert {"sim0", "sim1"} <= names

        # send-raw, and the device's answer on the rx channel named after the connection
        # (the client joins a device's channel within the gateway's watch refresh).
        for attempt in range(15):
            sent = call(client, "send-raw", {"name": "sim0", "payload": f"ECHO rx{attempt}\n"})
            assert sent["state"] == "queued"
            if sim0.has(f"rx{attempt}\n".encode(), 2):
                break
        else:
            raise AssertionError(f"no rx chunk on the sim0 channel: {sim0.chunks!r}")

        # activate-connection: a frame device plugged in beside `hwq up`.
        link = up.home / "dev" / "board"
        frame_sim = subprocess.Popen(
            [sys.executable, "-m", "hwq.cli", "sim", "--kind", "frame", "--name", "board",
             "--home", str(tmp_path), "--link", str(link)],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not link.exists():
            assert time.monotonic() < deadline, "the frame simulator never started"
            time.sleep(0.2)
        activated = call(
            client, "activate-connection", {"name": "board", "address": str(link),
                                            "codec": "frame"}
        )  # fmt: skip
        assert activated["connection"]["active"] is True
        up.wait_online("board")
        board = RxChannel(client, "board")

        # send-command through the frame codec, the ancestor's field names.
        replied = call(client, "send-command", {"name": "board", "command-id": 2, "args": [5, 7]})
        assert replied["state"] == "done" and replied["response"] == {"status": 0, "values": [12]}
        deadline = time.monotonic() + 30
        while not board.chunks:
            assert time.monotonic() < deadline, "no rx chunk on the board channel"
            call(client, "send-command", {"name": "board", "command-id": 2, "args": [1, 1]})

        # rename-reference, then deactivate-connection under the new name.
        renamed = call(client, "rename-reference", {"old": "board", "new": "bench-board"})
        assert renamed["connection"]["name"] == "bench-board"
        listed = {c["name"] for c in call(client, "list-connections")["connections"]}
        assert "bench-board" in listed and "board" not in listed
        deactivated = call(client, "deactivate-connection", {"name": "bench-board"})
        assert deactivated["connection"]["active"] is False
        # A viewer watches but cannot send.
        viewer_token = subprocess.run(
            [sys.executable, "-m", "hwq.cli", "token", "create", "--role", "viewer", "--name",
             "gw-viewer"],
            env={**os.environ, "HWQ_URL": f"http://127.0.0.1:{up.api_port}",
                 "HWQ_TOKEN": up.token},
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.strip()  # fmt: skip
        viewer = socketio.Client(reconnection=False)
        viewer.connect(gateway, auth={"token": viewer_token}, wait_timeout=20)
        try:
            refused = viewer.call("send-raw", {"name": "sim0", "payload": "x"}, timeout=30)
            assert refused["ok"] is False and refused["status"] == 403, refused
        finally:
            viewer.disconnect()
    finally:
        client.disconnect()
        if frame_sim is not None:
            frame_sim.terminate()
            frame_sim.wait(30)


def test_the_gateway_page_leads_to_the_console(up: Up) -> None:
    gateway = f"http://127.0.0.1:{up.gateway_port}"
    with urllib.request.urlopen(gateway + "/", timeout=10) as page:
        assert page.status == 200 and b'href="/console"' in page.read()
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(gateway + "/console", timeout=10)
    assert redirect.value.code == 302
    console = redirect.value.headers["Location"]
    assert console == f"http://127.0.0.1:{up.api_port}/"
    with urllib.request.urlopen(console, timeout=10) as page:
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")

"""`hwq up` runs one host agent for its machine: a device registered after it started, with no
host named, is served at once, with no restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness_http import http
from bench.local_stack import hwq_up


def test_a_device_registered_later_is_served_without_restart(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWQ_")}
    env["HWQ_HOSTNAME"] = "uphost"
    link = tmp_path / "scope-port"
    # A port of its own, as a USB adapter plugged in after `hwq up` started would be.
    sim = subprocess.Popen(
        [sys.executable, "-m", "hwq.cli", "sim", "--name", "scope", "--home", str(tmp_path),
         "--link", str(link)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with hwq_up(tmp_path / "home", env, "--sim", "1") as up:
            token = up.admin_token
            reply = http("POST", f"{up.base}/devices", token=token,
                         body={"name": "scope", "address": str(link)})  # fmt: skip
            assert reply.status == 201, reply.body
            assert reply.body["host"] == "uphost"
            deadline = time.monotonic() + 60
            while not http("GET", f"{up.base}/devices/scope", token=token).body["online"]:
                assert time.monotonic() < deadline, "the new device never came online"
                time.sleep(0.5)

            def run(device: str, line: str) -> dict[str, object]:
                reply = http("POST", f"{up.base}/devices/{device}/commands", token=token,
                             body={"kind": "line", "payload": line})  # fmt: skip
                assert reply.status == 202, reply.body
                settled = http("GET", f"{up.base}/commands/{reply.body['id']}?wait=30",
                               token=token)  # fmt: skip
                assert settled.body["state"] == "done", settled.body
                return dict(settled.body["response"])

            assert str(run("scope", "*IDN?")["text"]).startswith("HWQ,SIM,scope")
            assert run("sim0", "ECHO hi") == {"text": "hi"}
    finally:
        sim.terminate()
        sim.wait(timeout=30)

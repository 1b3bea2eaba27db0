"""The host agent serves its devices: it lists the simulated adapters it sees, resolves `usb:`
addresses to whatever terminal the adapter has now, starts and stops workers as devices come,
go, move between hosts or are turned off, and leaves nothing running when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import serial

from bench.host_fleet import SIM_PID, SIM_VID, HostFleet, child_pids
from bench.local_stack import Stack
from config import Settings
from tasks.celery_app import create_celery
from tasks.queues import host_queue


@pytest.fixture
def fleet(stack: Stack) -> Iterator[HostFleet]:
    fleet = HostFleet(stack)
    yield fleet
    for name in [n for n in stack.processes if n.startswith(("host-", "sim-"))]:
        stack.stop(name)
    fleet.close()


def _host() -> str:
    return f"h{uuid.uuid4().hex[:6]}"


def test_usb_adapter_listed_resolved_and_renumbered(fleet: HostFleet, stack: Stack) -> None:
    host, name, serial_number = _host(), f"u{uuid.uuid4().hex[:7]}", uuid.uuid4().hex[:8]
    link = fleet.plug_adapter(name, serial_number)
    first_path = os.path.realpath(link)
    fleet.start_agent(host)
    fleet.register(name, f"usb:{SIM_VID}:{SIM_PID}:{serial_number}", host)
    fleet.wait_presence(name, "online")

    def listed() -> dict[str, object]:
        raw = fleet.redis.get(fleet.presence_store.host_ports_key(host))
        ports = json.loads(raw or "[]")
        return next(p for p in ports if p["serial_number"] == serial_number)

    stack.wait_for(lambda: listed()["device"] == name, "the port bound to its device")
    port = listed()
    assert port["path"] == first_path
    assert port["by_id"] == str(link)
    assert (port["vid"], port["pid"]) == (SIM_VID, SIM_PID)
    assert port["manufacturer"] == "HWQ" and port["product"] == "Sim scpi"
    assert stack.wait(stack.submit(name, "ECHO before"))["response"] == {"text": "before"}

    # The waits are generous: a machine busy with other suites takes its time, and how fast
    # a missing port shows is asserted in the next test.
    fleet.unplug(name)
    fleet.wait_presence(name, "port-missing")
    fleet.replug(name)
    stack.wait_for(lambda: os.path.realpath(link) != first_path, "a new terminal")
    fleet.wait_presence(name, "online")
    assert listed()["path"] == os.path.realpath(link)
    assert stack.wait(stack.submit(name, "ECHO after"))["response"] == {"text": "after"}


def test_unplugged_port_holds_the_queue_until_it_returns(fleet: HostFleet, stack: Stack) -> None:
    host, name, serial_number = _host(), f"q{uuid.uuid4().hex[:7]}", uuid.uuid4().hex[:8]
    fleet.plug_adapter(name, serial_number)
    fleet.start_agent(host)
    fleet.register(name, f"usb:{SIM_VID}:{SIM_PID}:{serial_number}", host)
    fleet.wait_presence(name, "online")

    fleet.unplug(name)
    took = fleet.wait_presence(name, "port-missing", timeout=10)
    assert took < 5.0, f"port-missing showed after {took:.1f} s"
    assert serial_number in fleet.error(name) or "usb:" in fleet.error(name)
    waiting = [stack.submit(name, f"ECHO {i}") for i in range(3)]
    doomed = stack.submit(name, "ECHO never", expires_s=2)
    assert stack.wait(doomed, seconds=30)["state"] == "expired"
    for command_id in waiting:
        assert stack.request("GET", f"/commands/{command_id}").body["state"] == "queued"

    fleet.replug(name)
    fleet.wait_presence(name, "online")
    finished = [stack.wait(command_id) for command_id in waiting]
    assert [c["response"] for c in finished] == [{"text": str(i)} for i in range(3)]
    dispatched = [c["dispatched_at"] for c in finished]
    assert dispatched == sorted(dispatched)


def test_two_agents_serve_their_own_devices_and_a_move(fleet: HostFleet, stack: Stack) -> None:
    host_a, host_b = _host(), _host()
    names = {host_a: f"a{uuid.uuid4().hex[:7]}", host_b: f"b{uuid.uuid4().hex[:7]}"}
    for name in names.values():
        fleet.plug_adapter(name, name)
    for host in names:
        fleet.start_agent(host)
    for host, name in names.items():
        fleet.register(name, str(fleet.ports_dir / f"usb-HWQ_Sim_{name}-if00-port0"), host)
    for name in names.values():
        fleet.wait_presence(name, "online")
    assert len(fleet.worker_pids(host_a)) == 1
    assert len(fleet.worker_pids(host_b)) == 1

    moving = names[host_a]
    before_b = fleet.worker_pids(host_b)
    fleet.put(moving, host=host_b)
    stack.wait_for(lambda: not fleet.worker_pids(host_a), "the old host's worker to stop")
    stack.wait_for(lambda: len(fleet.worker_pids(host_b)) == 2, "the new host's worker")
    assert before_b < fleet.worker_pids(host_b)
    fleet.wait_presence(moving, "online")
    assert stack.wait(stack.submit(moving, "ECHO moved"))["response"] == {"text": "moved"}


def test_deactivate_releases_the_port_and_activate_serves_again(
    fleet: HostFleet, stack: Stack
) -> None:
    host, name = _host(), f"d{uuid.uuid4().hex[:7]}"
    link = fleet.plug_adapter(name, name)
    fleet.start_agent(host)
    fleet.register(name, str(link), host)
    fleet.wait_presence(name, "online")
    app = create_celery(Settings(redis_url=stack.redis_url, key_prefix=stack.key_prefix))

    def sync() -> None:
        app.send_task("hwq.host_sync", kwargs={"device": name}, queue=host_queue(host))

    fleet.put(name, active="0")
    sync()
    stack.wait_for(lambda: not fleet.worker_pids(host), "the worker to stop", timeout=15)
    assert fleet.presence(name) == "inactive"
    # The port is free: this test can hold it exclusively.
    with serial.Serial(str(link), timeout=2, exclusive=True) as port:
        port.write(b"ECHO mine\n")
        assert port.readline() == b"mine\n"
    queued = stack.submit(name, "ECHO later")
    time.sleep(1)
    assert stack.request("GET", f"/commands/{queued}").body["state"] == "queued"

    fleet.put(name, active="1")
    sync()
    assert stack.wait(queued)["response"] == {"text": "later"}
    app.close()


def test_agent_stops_its_workers_on_sigterm_and_with_sigkill(
    fleet: HostFleet, stack: Stack
) -> None:
    for how in (signal.SIGTERM, signal.SIGKILL):
        host, name = _host(), f"k{uuid.uuid4().hex[:7]}"
        link = fleet.plug_adapter(name, name)
        fleet.start_agent(host)
        fleet.register(name, str(link), host)
        fleet.wait_presence(name, "online")
        workers = fleet.worker_pids(host)
        forkserver = child_pids(fleet.agent_pid(host))
        assert workers
        stack.stop(f"host-{host}", how)
        deadline = time.monotonic() + 30
        left = workers | forkserver
        while left and time.monotonic() < deadline:
            left = {pid for pid in left if _running(pid)}
            time.sleep(0.2)
        assert not left, f"still running after {how.name}: {left}"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_hwq_run_says_an_unplugged_device_waits_for_its_port(
    fleet: HostFleet, stack: Stack
) -> None:
    host, name, serial_number = _host(), f"r{uuid.uuid4().hex[:7]}", uuid.uuid4().hex[:8]
    fleet.plug_adapter(name, serial_number)
    fleet.start_agent(host)
    fleet.register(name, f"usb:{SIM_VID}:{SIM_PID}:{serial_number}", host)
    fleet.wait_presence(name, "online")
    fleet.unplug(name)
    fleet.wait_presence(name, "port-missing", timeout=10)

    result = _hwq_cli(stack, "run", name, "ECHO waited", "--wait", "1")

    assert result.returncode == 1
    assert f"device {name} is port-missing" in result.stderr, result.stderr
    assert "not plugged in" in result.stderr
    assert "once its worker opens the port again" in result.stderr
    assert "no worker serves it" not in result.stderr
    command_id = stack.request("GET", f"/commands?device={name}").body["items"][0]["id"]
    fleet.replug(name)
    assert stack.wait(command_id)["response"] == {"text": "waited"}


def _hwq_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env(), "HWQ_URL": stack.base.removesuffix("/api/v1"),
           "HWQ_TOKEN": stack.admin_token}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "hwq.cli", *args], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip

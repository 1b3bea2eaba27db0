"""Hosts, ports, activation and host_sync messages through a running API, over HTTP.

The keys a host agent writes (`P:hosts`, `P:host:<H>`, `P:host:<H>:ports`) and the worker's
`:alive` key are written here by the test, as the agent and the worker would.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis
import serial

from bench.local_stack import Stack
from tasks.celery_app import broker_key_prefix
from tasks.queues import host_queue

HOST_SYNC = "hwq.host_sync"


@pytest.fixture
def client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url)


def _token(stack: Stack, role: str) -> str:
    return stack.hwq("token", "create", "--role", role, "--name", f"e2e-{role}").strip()


def _syncs(stack: Stack, client: redis.Redis, host: str) -> list[dict[str, Any]]:
    """Every hwq.host_sync message waiting on the host's queue, oldest first; taken off it."""
    key = broker_key_prefix(stack.key_prefix) + host_queue(host)
    found = []
    while (raw := client.rpop(key)) is not None:
        envelope = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        assert envelope["headers"]["task"] == HOST_SYNC
        assert envelope["properties"]["delivery_info"]["routing_key"] == host_queue(host)
        found.append(kwargs)
    return found


def _cli(stack: Stack, *args: str) -> str:
    """`hwq ARGS` as a person runs it against the stack's API."""
    env = {**stack.env(), "HWQ_URL": stack.base, "HWQ_TOKEN": stack.admin_token}
    result = subprocess.run([sys.executable, "-m", "hwq.cli", *args], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _agent_runs(stack: Stack, client: redis.Redis, host: str) -> None:
    """Write the host agent's record, as a running agent keeps it fresh."""
    client.hset(f"{stack.key_prefix}:host:{host}", mapping={"name": host, "last_seen": "now"})
    client.expire(f"{stack.key_prefix}:host:{host}", 60)


def _deactivate_without_waiting(stack: Stack, client: redis.Redis, name: str) -> None:
    """With a worker marked alive that nobody will stop, deactivate answers at once."""
    client.set(f"{stack.key_prefix}:device:{name}:alive", "1", ex=30)
    started = time.monotonic()
    reply = stack.request("POST", f"/devices/{name}/deactivate")
    assert reply.status == 200 and reply.body["presence"] == "inactive"
    assert time.monotonic() - started < 8.0


def _register(stack: Stack, name: str, **fields: Any) -> dict[str, Any]:
    reply = stack.request("POST", "/devices", body={"name": name, "address": "loop://", **fields})
    assert reply.status == 201, reply.body
    return dict(reply.body)


def test_registry_changes_tell_each_concerned_host(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    name = device_name
    device = _register(stack, name, host="pi-3")
    assert (device["host"], device["active"], device["presence"]) == ("pi-3", True, "offline")
    assert _syncs(stack, client, "pi-3") == [{"device": name}]
    # A move: both the old and the new host hear.
    assert stack.request("PATCH", f"/devices/{name}", body={"host": "pi-4"}).status == 200
    assert _syncs(stack, client, "pi-3") == [{"device": name}]
    assert _syncs(stack, client, "pi-4") == [{"device": name}]
    # A rename: the host hears of the old name and the new.
    renamed = f"{name}-b"
    assert stack.request("PATCH", f"/devices/{name}", body={"name": renamed}).status == 200
    assert _syncs(stack, client, "pi-4") == [{"device": name}, {"device": renamed}]
    hosts = {h["name"]: h for h in stack.request("GET", "/hosts").body["items"]}
    assert renamed in hosts["pi-4"]["devices"] and name not in hosts["pi-4"]["devices"]
    assert renamed not in hosts.get("pi-3", {"devices": []})["devices"]
    # Remove: deactivated first (one sync), then forgotten (another).
    assert stack.request("DELETE", f"/devices/{renamed}").status == 204
    assert _syncs(stack, client, "pi-4") == [{"device": renamed}, {"device": renamed}]
    items = stack.request("GET", "/hosts").body["items"]
    assert all(renamed not in h["devices"] for h in items), items


def test_a_device_left_without_host_is_served_by_the_apis_machine(
    stack: Stack, device_name: str
) -> None:
    assert _register(stack, device_name)["host"] == "e2e"
    assert _register(stack, f"{device_name}-x", host=None)["host"] is None


def test_deactivate_waits_for_the_worker_to_release_the_port(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    name = device_name
    _register(stack, name, host="pi-5")
    _syncs(stack, client, "pi-5")
    # Its host agent runs (its record is fresh), and so does the device's worker.
    _agent_runs(stack, client, "pi-5")
    alive = f"{stack.key_prefix}:device:{name}:alive"
    client.set(alive, "1", ex=30)
    client.set(f"{stack.key_prefix}:device:{name}:presence", "online", ex=30)
    assert stack.device(name)["presence"] == "online"
    # The worker stops a second after the host agent hears of the change.
    stopper = threading.Timer(1.0, client.delete, args=(alive,))
    stopper.start()
    started = time.monotonic()
    reply = stack.request("POST", f"/devices/{name}/deactivate")
    waited = time.monotonic() - started
    stopper.join()
    assert reply.status == 200, reply.body
    assert (reply.body["active"], reply.body["presence"], reply.body["online"]) == (
        False, "inactive", False
    )  # fmt: skip
    assert 0.9 <= waited < 9.0, waited
    assert _syncs(stack, client, "pi-5") == [{"device": name}]
    assert client.hget(f"{stack.key_prefix}:device:{name}", "active") == b"0"
    # Again: nothing changes, nothing is sent.
    again = stack.request("POST", f"/devices/{name}/deactivate")
    assert again.status == 200 and again.body["presence"] == "inactive"
    assert _syncs(stack, client, "pi-5") == []
    # Commands are still accepted; they wait in the queue.
    assert stack.request("POST", f"/devices/{name}/commands",
                         body={"kind": "line", "payload": "*IDN?"}).status == 202  # fmt: skip


def test_without_a_host_agent_deactivate_does_not_wait(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    # No agent runs on its host to stop its worker.
    _register(stack, device_name, host="pi-gone")
    _deactivate_without_waiting(stack, client, device_name)


def test_an_http_poll_device_is_deactivated_without_waiting(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    host = f"pi-{device_name}"
    reply = stack.request("POST", "/devices", body={"name": device_name, "transport": "http-poll",
                                                    "codec": "line", "host": host})  # fmt: skip
    assert reply.status == 201, reply.body
    # Its host agent runs, and the device polls (marking itself alive), but no worker exists.
    _agent_runs(stack, client, host)
    _deactivate_without_waiting(stack, client, device_name)


def test_activate_clears_a_failure_and_tells_the_host(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    name = device_name
    _register(stack, name, host="pi-6")
    assert stack.request("POST", f"/devices/{name}/deactivate").status == 200
    base = f"{stack.key_prefix}:device:{name}"
    client.set(f"{base}:presence", "failed")
    client.set(f"{base}:error", "crashed 5 times in 60 s")
    _syncs(stack, client, "pi-6")
    reply = stack.request("POST", f"/devices/{name}/activate")
    assert reply.status == 200, reply.body
    assert (reply.body["active"], reply.body["presence"], reply.body["error"]) == (
        True, "offline", None
    )  # fmt: skip
    assert client.hget(base, "active") == b"1"
    assert _syncs(stack, client, "pi-6") == [{"device": name}]
    assert stack.request("POST", f"/devices/{name}/activate").status == 200
    assert _syncs(stack, client, "pi-6") == []


def test_hosts_and_ports_as_the_agent_announced_them(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    prefix = stack.key_prefix
    host = f"pi-{device_name}"
    client.sadd(f"{prefix}:hosts", host)
    client.hset(f"{prefix}:host:{host}", mapping={
        "name": host, "started_at": "2026-11-29T16:00:00Z", "last_seen": "2026-11-29T16:10:00Z",
        "pid": "4242", "version": "0.1.0"})  # fmt: skip
    client.expire(f"{prefix}:host:{host}", 30)
    _register(stack, device_name, host=host, address="usb:0403:6001:A10K3")
    port = {"path": "/dev/ttyUSB0", "by_id": "/dev/serial/by-id/usb-FTDI_A10K3-if00-port0",
            "description": "FT232R USB UART", "hwid": "USB VID:PID=0403:6001 SER=A10K3",
            "vid": "0403", "pid": "6001", "serial_number": "A10K3", "location": "1-1.2",
            "manufacturer": "FTDI", "product": "FT232R USB UART", "device": None}  # fmt: skip
    other = {**port, "path": "/dev/ttyACM0", "by_id": None, "vid": None, "pid": None,
             "serial_number": None, "hwid": "n/a"}  # fmt: skip
    client.set(f"{prefix}:host:{host}:ports", json.dumps([port, other]), ex=30)
    hosts = {h["name"]: h for h in stack.request("GET", "/hosts").body["items"]}
    assert hosts[host] == {"name": host, "online": True, "last_seen": "2026-11-29T16:10:00Z",
                           "devices": [device_name]}  # fmt: skip
    reply = stack.request("GET", f"/hosts/{host}/ports")
    assert reply.status == 200, reply.body
    assert reply.body["items"] == [{**port, "device": device_name}, other]
    assert stack.request("GET", "/hosts/never-seen/ports").status == 404
    # The CLI shows the same, as a table.
    table = _cli(stack, "ports", "--host", host)
    assert "/dev/ttyUSB0" in table and "0403:6001" in table and device_name in table
    assert "usb-FTDI_A10K3-if00-port0" in table
    listed = _cli(stack, "devices", "list")
    row = next(line for line in listed.splitlines() if line.startswith(device_name))
    assert host in row and "offline" in row


def test_options_are_checked_by_name(stack: Stack, device_name: str) -> None:
    for options, field in [({"parity": "even"}, "options.parity"),
                            ({"stopbits": 3}, "options.stopbits"),
                            ({"bytesize": 9}, "options.bytesize"),
                            ({"rtscts": "yes"}, "options.rtscts"),
                            ({"xonxoff": 0}, "options.xonxoff"),
                            ({"python": 1}, "options.python"),
                            ({"line_ending": "\t"}, "options.line_ending")]:  # fmt: skip
        for method, path, body in [
            ("POST", "/devices", {"name": device_name, "address": "loop://", "options": options}),
        ]:
            reply = stack.request(method, path, body=body)
            assert reply.status == 422, (options, reply.body)
            assert [e["field"] for e in reply.body["errors"]] == [field], reply.body
    good = {"bytesize": 7, "parity": "E", "stopbits": 1.5, "rtscts": False, "xonxoff": True,
            "line_ending": "\r\n", "python": True}  # fmt: skip
    assert _register(stack, device_name, options=good)["options"] == good
    bad = stack.request("PATCH", f"/devices/{device_name}", body={"options": {"parity": "X"}})
    assert bad.status == 422 and bad.body["errors"][0]["field"] == "options.parity"
    _cli(stack, "devices", "set", device_name, "--options", "parity=O", "--options", "python=null")
    kept = {k: v for k, v in good.items() if k != "python"}
    assert stack.device(device_name)["options"] == {**kept, "parity": "O"}
    refused = subprocess.run(
        [sys.executable, "-m", "hwq.cli", "devices", "set", device_name, "--options", "stopbits"],
        env={**stack.env(), "HWQ_URL": stack.base, "HWQ_TOKEN": stack.admin_token},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "'stopbits' is not KEY=VALUE" in refused.stderr


def test_roles(stack: Stack, device_name: str) -> None:
    _register(stack, device_name, host="pi-7")
    viewer, operator = _token(stack, "viewer"), _token(stack, "operator")
    assert stack.request("GET", "/hosts", token=viewer).status == 200
    assert stack.request("GET", "/hosts/pi-7/ports", token=viewer).status == 200
    assert stack.request("GET", "/hosts", token="hwq_not-a-token").status == 401
    for action in ("activate", "deactivate"):
        path = f"/devices/{device_name}/{action}"
        assert stack.request("POST", path, token=operator).status == 403
        assert stack.request("POST", path, token=viewer).status == 403
        assert stack.request("POST", path, token="hwq_not-a-token").status == 401
    assert stack.request("POST", "/devices/no-such-device/activate").status == 404


def test_rename_and_remove_are_refused_while_commands_wait(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    name = device_name
    _register(stack, name, host="pi-8")
    assert stack.request("POST", f"/devices/{name}/deactivate").status == 200
    command = stack.submit(name, "*IDN?")
    _syncs(stack, client, "pi-8")
    assert stack.request("PATCH", f"/devices/{name}", body={"name": f"{name}-b"}).status == 409
    assert stack.request("DELETE", f"/devices/{name}").status == 409
    assert _syncs(stack, client, "pi-8") == []
    assert stack.device(name)["queue_depth"] == 1
    assert stack.request("POST", f"/commands/{command}/cancel").status == 200
    assert stack.request("DELETE", f"/devices/{name}").status == 204
    assert stack.request("GET", f"/devices/{name}").status == 404


class FakeAgent(threading.Thread):
    """Does what a host agent does on `hwq.host_sync`: stops or starts the device's worker as
    its mirror's `active` says."""

    def __init__(self, stack: Stack, host: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.host = stack, host
        self.client = redis.Redis.from_url(stack.redis_url)
        self.queue = broker_key_prefix(stack.key_prefix) + host_queue(host)
        # When it asked the worker to stop.
        self.stopping_at: float | None = None
        self.running = True

    def run(self) -> None:
        while self.running:
            popped = self.client.brpop([self.queue], timeout=1)
            if popped is None:
                continue
            _, kwargs, _ = json.loads(base64.b64decode(json.loads(popped[1])["body"]))
            name = kwargs["device"]
            active = self.client.hget(f"{self.stack.key_prefix}:device:{name}", "active")
            worker = f"device-{name}"
            if active == b"0" and worker in self.stack.processes:
                self.stopping_at = time.monotonic()
                self.stack.stop(worker)
            elif active == b"1" and worker not in self.stack.processes:
                self.stack.spawn(worker, "device-worker", name, with_database=False)


def test_deactivate_frees_the_port_and_activate_brings_the_device_back(
    stack: Stack, client: redis.Redis, device_name: str
) -> None:
    name, host = device_name, f"agent-{device_name}"
    stack.add_sim_device(name)
    assert stack.request("PATCH", f"/devices/{name}", body={"host": host}).status == 200
    _agent_runs(stack, client, host)
    agent = FakeAgent(stack, host)
    agent.start()
    try:
        reply = stack.request("POST", f"/devices/{name}/deactivate")
        answered = time.monotonic()
        assert reply.status == 200 and reply.body["presence"] == "inactive", reply.body
        assert agent.stopping_at is not None and agent.stopping_at <= answered
        # The port is free: another program can take it at once, exclusively.
        port = serial.serial_for_url(str(stack.home / "dev" / name), exclusive=True, timeout=1)
        port.close()
        # Commands wait meanwhile, and run once the device is active again.
        command = stack.submit(name, "*IDN?")
        assert stack.request("POST", f"/devices/{name}/activate").status == 200
        # Polled here, not with stack.wait_for, which reads the processes the agent changes.
        deadline = time.monotonic() + 60
        while stack.device(name)["presence"] != "online":
            assert time.monotonic() < deadline, "the worker did not come back"
            time.sleep(0.2)
        done = stack.wait(command)
        assert done["state"] == "done" and done["response"]["text"].startswith("HWQ,SIM")
    finally:
        agent.running = False
        agent.join(timeout=5)

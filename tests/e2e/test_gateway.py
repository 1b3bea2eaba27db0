"""`hwq gateway` as the ancestor's browser tools use it: a Socket.IO client drives every event
with the ancestor's field names against a running gateway, API, server worker and device
workers on simulators, and receives the rx channel.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import socketio

from bench.local_stack import Stack
from bench.ordered_socketio import OrderedClient as in_order_client
from hwq.embedded_redis import free_port

GATEWAY_EVENTS = (
    "list-devices",
    "list-connections",
    "activate-connection",
    "deactivate-connection",
    "rename-reference",
    "send-raw",
    "send-command",
)
ACK_TIMEOUT_S = 30


class Gateway:
    """A running `hwq gateway` beside the stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis = redis.Redis.from_url(stack.redis_url)

    def start(self) -> None:
        self.stack.spawn("gateway", "gateway", "--port", str(self.port))
        self.stack.wait_for(lambda: self.get("/")[0] == 200, "the gateway")

    def get(self, path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read()

    def token(self, role: str, name: str) -> str:
        return self.stack.hwq("token", "create", "--role", role, "--name", name).strip()

    def client(self, token: str | None, **connect: Any) -> socketio.Client:
        client = in_order_client(reconnection=False)
        auth = None if token is None else {"token": token}
        client.connect(self.url, auth=auth, transports=["websocket"], wait_timeout=20, **connect)
        return client

    def key(self, suffix: str) -> str:
        return f"{self.stack.key_prefix}:{suffix}"


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[Gateway]:
    running = Gateway(stack)
    running.start()
    yield running
    stack.stop("gateway")
    running.redis.close()


@pytest.fixture
def admin(gateway: Gateway) -> Iterator[socketio.Client]:
    client = gateway.client(gateway.stack.admin_token)
    yield client
    client.disconnect()


def call(client: socketio.Client, event: str, data: object = None) -> dict[str, Any]:
    answer = client.call(event, data, timeout=ACK_TIMEOUT_S)
    assert isinstance(answer, dict), answer
    return answer


class Received:
    """The chunks one client received on a device's rx channel."""

    def __init__(self, client: socketio.Client, device: str) -> None:
        self.chunks: list[bytes] = []
        self.arrived = threading.Event()
        client.on(device, self._take)

    def _take(self, data: bytes) -> None:
        self.chunks.append(data)
        self.arrived.set()

    def wait_for(self, wanted: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            joined = b"".join(self.chunks)
            if wanted in joined:
                return joined
            self.arrived.wait(0.2)
            self.arrived.clear()
        raise AssertionError(f"{wanted!r} never arrived; got {self.chunks!r}")


def connection(client: socketio.Client, name: str) -> dict[str, Any] | None:
    answer = call(client, "list-connections")
    assert answer["ok"], answer
    found = [c for c in answer["connections"] if c["name"] == name]
    return found[0] if found else None


def wait_terminal(stack: Stack, command_id: str) -> dict[str, Any]:
    return stack.wait(command_id, 30)


# --- the page -----------------------------------------------------------------------------


def test_the_page_and_its_socket_io_client_are_served_without_a_token(gateway: Gateway) -> None:
    status, content_type, body = gateway.get("/")
    assert status == 200 and content_type.startswith("text/html")
    assert b"hwq gateway" in body and b'src="/socket.io.min.js"' in body
    status, content_type, script = gateway.get("/socket.io.min.js")
    assert status == 200 and "javascript" in content_type
    assert script.startswith(b"/*!\n * Socket.IO v4.")


# --- who may connect and do what --------------------------------------------------------------


def test_no_token_or_a_bad_token_is_no_connection(gateway: Gateway) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        gateway.client(None)
    with pytest.raises(socketio.exceptions.ConnectionError):
        gateway.client("hwq_not-a-token")
    device_token = gateway.stack.hwq(
        "token", "create", "--role", "device", "--name", "gw-device", "--device", "sim-x"
    ).strip()
    with pytest.raises(socketio.exceptions.ConnectionError):
        gateway.client(device_token)


def test_a_token_in_the_query_string_connects(gateway: Gateway) -> None:
    token = gateway.token("viewer", "gw-query")
    client = in_order_client(reconnection=False)
    client.connect(f"{gateway.url}?token={token}", transports=["websocket"], wait_timeout=20)
    try:
        assert call(client, "list-connections")["ok"]
    finally:
        client.disconnect()


def test_a_viewer_lists_but_cannot_send_or_activate(gateway: Gateway, device_name: str) -> None:
    gateway.stack.add_sim_device(device_name, worker=False)
    viewer = gateway.client(gateway.token("viewer", "gw-viewer"))
    try:
        assert call(viewer, "list-devices")["ok"]
        assert connection(viewer, device_name) is not None
        for event, data, role in (
            ("send-raw", {"name": device_name, "payload": "*IDN?\n"}, "operator"),
            ("send-command", {"name": device_name, "command-id": 1, "args": []}, "operator"),
            ("activate-connection", {"name": device_name, "address": "/dev/null"}, "admin"),
            ("deactivate-connection", {"name": device_name}, "admin"),
            ("rename-reference", {"old": device_name, "new": device_name + "x"}, "admin"),
        ):
            answer = call(viewer, event, data)
            assert answer["ok"] is False and answer["status"] == 403, answer
            assert f"requires role {role}" in answer["error"]
    finally:
        viewer.disconnect()
    assert gateway.stack.request("GET", f"/commands?device={device_name}").body["items"] == []


def test_a_revoked_token_is_disconnected_and_refused_on_connect(gateway: Gateway) -> None:
    token = gateway.token("operator", "gw-revoked")
    client = gateway.client(token)
    try:
        assert call(client, "list-connections")["ok"]
        tokens = gateway.stack.request("GET", "/tokens").body["items"]
        (item,) = [t for t in tokens if t["name"] == "gw-revoked"]
        assert gateway.stack.request("DELETE", f"/tokens/{item['id']}").status == 204
        # Its open connection ends too, event or not, so it stops receiving rx chunks.
        gateway.stack.wait_for(lambda: not client.connected, "the revoked client's end", 30)
    finally:
        client.disconnect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        gateway.client(token)


# --- every event, with the ancestor's field names ------------------------------------------


def test_send_raw_queues_a_raw_command_that_reaches_the_device(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    gateway.stack.add_sim_device(device_name)
    for payload, line in (
        ("ECHO as text\n", "ECHO as text"),
        (b"ECHO as a buffer\n", "ECHO as a buffer"),
        (list(b"ECHO as numbers\n"), "ECHO as numbers"),
    ):
        answer = call(admin, "send-raw", {"name": device_name, "payload": payload})
        assert answer["ok"] is True and answer["state"] == "queued", answer
        command = wait_terminal(gateway.stack, answer["id"])
        assert command["kind"] == "raw" and command["state"] == "done", command
        assert line in gateway.stack.sim_log(device_name)


def test_the_rx_channel_carries_what_the_device_stream_holds(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    gateway.stack.add_sim_device(device_name, worker=False)
    other = gateway.client(gateway.token("viewer", "gw-rx-viewer"))
    try:
        mine, theirs = Received(admin, device_name), Received(other, device_name)
        stream = gateway.key(f"stream:{device_name}")
        # The live stream as the device worker writes it (shared contract, DESIGN §9). The
        # viewer, connected after the device was added, joins its room at once; the admin,
        # connected before, at the gateway's next refresh: entries keep coming until both do.
        deadline = time.monotonic() + 30
        while not (mine.chunks and theirs.chunks) and time.monotonic() < deadline:
            gateway.redis.xadd(
                stream, {"kind": "tx", "at": "t", "data": b"not rx", "command_id": ""}
            )
            gateway.redis.xadd(
                stream, {"kind": "rx", "at": "t", "data": b"\x00\xffhello", "command_id": ""}
            )
            time.sleep(0.5)
        assert mine.wait_for(b"\x00\xffhello") and theirs.wait_for(b"\x00\xffhello")
        assert b"not rx" not in b"".join(mine.chunks)
    finally:
        other.disconnect()


def test_a_device_reply_to_send_raw_arrives_on_the_rx_channel(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    gateway.stack.add_sim_device(device_name)
    received = Received(admin, device_name)
    time.sleep(3)  # a refresh puts the client in the new device's room
    answer = call(admin, "send-raw", {"name": device_name, "payload": "*IDN?\n"})
    assert answer["ok"], answer
    wait_terminal(gateway.stack, answer["id"])
    if not gateway.redis.exists(gateway.key(f"stream:{device_name}")):
        pytest.skip("the device worker does not write the live stream P:stream:<name> here")
    received.wait_for(b"HWQ,SIM")


def test_send_command_answers_with_the_frame_reply(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    gateway.stack.add_sim_device(device_name, kind="frame")
    answer = call(admin, "send-command", {"name": device_name, "command-id": 2, "args": [40, 2]})
    assert answer["ok"] is True and answer["state"] == "done", answer
    assert answer["response"] == {"status": 0, "values": [42]}
    assert wait_terminal(gateway.stack, answer["id"])["kind"] == "frame"
    answer = call(admin, "send-command", {"name": device_name, "command-id": 99, "args": []})
    assert answer["ok"] is True and answer["response"]["status"] == 1, answer


def test_send_command_to_a_line_device_is_refused_naming_the_kind(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    gateway.stack.add_sim_device(device_name, worker=False)
    answer = call(admin, "send-command", {"name": device_name, "command-id": 1, "args": [1]})
    assert answer["ok"] is False and answer["status"] == 422
    assert "codec line" in answer["error"]


def test_activate_registers_a_new_device_then_deactivate_and_reactivate(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    host_queue = gateway.key("q:hwq.host.e2e")
    before = gateway.redis.llen(host_queue)
    answer = call(admin, "activate-connection", {"name": device_name, "address": "/dev/ttyGW0"})
    assert answer["ok"] is True and answer["registered"] is True, answer
    assert answer["connection"]["active"] is True
    device = gateway.stack.device(device_name)
    # Registered as a serial device on the gateway machine's host, as the API would.
    assert (device["transport"], device["address"], device["host"]) == (
        "serial", "/dev/ttyGW0", "e2e"
    )  # fmt: skip
    assert connection(admin, device_name)["active"] is True  # type: ignore[index]
    assert gateway.redis.llen(host_queue) > before
    message = json.loads(gateway.redis.lindex(host_queue, 0))  # type: ignore[arg-type]
    assert message["headers"]["task"] == "hwq.host_sync"

    answer = call(admin, "deactivate-connection", {"name": device_name})
    assert answer["ok"] is True and answer["connection"]["active"] is False
    assert connection(admin, device_name)["active"] is False  # type: ignore[index]

    answer = call(admin, "activate-connection", {"name": device_name, "address": "/dev/ttyGW1"})
    assert answer["ok"] is True and answer["registered"] is False, answer
    assert gateway.stack.device(device_name)["address"] == "/dev/ttyGW1"
    assert connection(admin, device_name)["active"] is True  # type: ignore[index]


def test_activate_puts_a_device_on_the_host_that_sees_its_port(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    host = f"bench-{device_name}"
    by_id = f"/dev/serial/by-id/usb-hwq_{device_name}-if00-port0"
    port = {"path": "/dev/ttyUSB3", "by_id": by_id, "description": "CP2102", "hwid": "",
            "vid": "10c4", "pid": "ea60", "serial_number": "0001", "location": "1-1",
            "manufacturer": "Silicon Labs", "product": "CP2102", "device": None}  # fmt: skip
    gateway.redis.sadd(gateway.key("hosts"), host)
    gateway.redis.hset(gateway.key(f"host:{host}"), mapping={"name": host, "pid": 1})
    gateway.redis.expire(gateway.key(f"host:{host}"), 30)
    gateway.redis.set(gateway.key(f"host:{host}:ports"), json.dumps([port]), ex=30)

    listing = call(admin, "list-devices")
    assert listing["ok"] is True
    (seen,) = [h for h in listing["hosts"] if h["name"] == host]
    assert seen["online"] is True and seen["ports"] == [port]
    assert {**port, "host": host} in listing["ports"]

    answer = call(admin, "activate-connection", {"name": device_name, "address": by_id})
    assert answer["ok"] is True, answer
    assert gateway.stack.device(device_name)["host"] == host
    assert gateway.redis.llen(gateway.key(f"q:hwq.host.{host}")) >= 1


def test_rename_is_refused_while_busy_and_then_renames(
    gateway: Gateway, admin: socketio.Client, device_name: str
) -> None:
    gateway.stack.add_sim_device(device_name)
    busy = gateway.stack.submit(device_name, "SLEEP 3000")
    new_name = device_name + "-new"
    answer = call(admin, "rename-reference", {"old": device_name, "new": new_name})
    assert answer["ok"] is False and answer["status"] == 409, answer
    assert "queued or in flight" in answer["error"]
    assert wait_terminal(gateway.stack, busy)["state"] == "done"
    answer = call(admin, "rename-reference", {"old": device_name, "new": new_name})
    assert answer["ok"] is True and answer["connection"]["name"] == new_name, answer
    assert connection(admin, new_name) is not None and connection(admin, device_name) is None
    answer = call(admin, "rename-reference", {"old": device_name, "new": new_name + "x"})
    assert answer["ok"] is False and answer["status"] == 404


# --- wrong or missing fields ------------------------------------------------------------------

BAD_FIELDS = [
    ("activate-connection", None, "data"),
    ("activate-connection", ["a"], "data"),
    ("activate-connection", {"address": "/dev/ttyX"}, "name"),
    ("activate-connection", {"name": "Bad Name", "address": "/dev/ttyX"}, "name"),
    ("activate-connection", {"name": "okname"}, "address"),
    ("activate-connection", {"name": "okname", "address": 5}, "address"),
    ("activate-connection", {"name": "okname", "address": "/d", "codec": "x"}, "codec"),
    ("deactivate-connection", {}, "name"),
    ("deactivate-connection", {"name": 3}, "name"),
    ("rename-reference", {"new": "b"}, "old"),
    ("rename-reference", {"old": "a"}, "new"),
    ("rename-reference", {"old": "a", "new": "../x"}, "new"),
    ("send-raw", "text", "data"),
    ("send-raw", b"\x00\x01", "data"),
    ("send-raw", {"payload": "x"}, "name"),
    ("send-raw", {"name": "okname"}, "payload"),
    ("send-raw", {"name": "okname", "payload": ""}, "payload"),
    ("send-raw", {"name": "okname", "payload": [1, 256]}, "payload"),
    ("send-raw", {"name": "okname", "payload": {"a": 1}}, "payload"),
    ("send-raw", {"name": "okname", "payload": 12}, "payload"),
    ("send-command", {"command-id": 1, "args": []}, "name"),
    ("send-command", {"name": "okname", "args": []}, "command-id"),
    ("send-command", {"name": "okname", "command_id": 1, "args": []}, "command-id"),
    ("send-command", {"name": "okname", "command-id": 256, "args": []}, "command-id"),
    ("send-command", {"name": "okname", "command-id": "1", "args": []}, "command-id"),
    ("send-command", {"name": "okname", "command-id": 1, "args": "1,2"}, "args"),
    ("send-command", {"name": "okname", "command-id": 1, "args": [1, 2**31]}, "args[1]"),
    ("send-command", {"name": "okname", "command-id": 1, "args": [0] * 65}, "args"),
    ("send-command", {"name": "okname", "command-id": 1, "timeout_s": 0}, "timeout_s"),
]


@pytest.mark.parametrize(("event", "data", "field"), BAD_FIELDS)
def test_a_wrong_or_missing_field_is_refused_naming_it(
    admin: socketio.Client, event: str, data: object, field: str
) -> None:
    answer = call(admin, event, data)
    assert answer["ok"] is False and answer["status"] == 422, answer
    assert answer["error"].startswith(f"{field}: "), answer
    assert answer["errors"][0]["field"] == field


def test_every_event_is_covered_by_the_field_checks() -> None:
    checked = {event for event, _data, _field in BAD_FIELDS}
    assert checked == set(GATEWAY_EVENTS) - {"list-devices", "list-connections"}


def test_an_unknown_device_is_not_found(admin: socketio.Client) -> None:
    for event, data in (
        ("send-raw", {"name": "nosuchdevice", "payload": "x"}),
        ("send-command", {"name": "nosuchdevice", "command-id": 1, "args": []}),
        ("deactivate-connection", {"name": "nosuchdevice"}),
    ):
        answer = call(admin, event, data)
        assert answer["ok"] is False and answer["status"] == 404, answer

"""A client written to the education ancestor's protocol (form posts, short polling, the token
as a field) walks a device through 0 → 1 → 2 → 3 → 0 against real API processes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
import redis

from bench.local_stack import Stack

pytestmark = pytest.mark.timeout(300)

FIELDS = {"user", "state", "command", "hw_command", "hw_response", "server_analysis", "time"}


class AncestorClient:
    """Speaks as the ancestor's clients did: form posts and queries, no headers."""

    def __init__(self, stack: Stack, token: str, user: str) -> None:
        self.url = f"{stack.base}/legacy"
        self.token = token
        self.user = user

    def post(self, command: str, **fields: str) -> tuple[int, dict[str, Any]]:
        form = {"user": self.user, "command": command, "token": self.token, **fields}
        data = urllib.parse.urlencode(form).encode()
        return self._send(urllib.request.Request(self.url, data=data, method="POST"))

    def status(self) -> tuple[int, dict[str, Any]]:
        query = urllib.parse.urlencode(
            {"user": self.user, "command": "status_query", "token": self.token}
        )
        return self._send(urllib.request.Request(f"{self.url}?{query}"))

    def poll_until(self, state: int, seconds: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            status, body = self.status()
            assert status == 200, body
            if body["state"] == state or time.monotonic() > deadline:
                return body
            time.sleep(0.5)

    @staticmethod
    def _send(request: urllib.request.Request) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def _legacy_device(stack: Stack, name: str, allow_python: bool = True) -> str:
    body = {"name": name, "transport": "http-poll", "options": {"python": allow_python}}
    assert stack.request("POST", "/devices", body=body).status == 201
    return stack.hwq("token", "create", "--role", "device", "--name", f"{name}-board",
                     "--device", name).strip()  # fmt: skip


def _refused(answer: tuple[int, dict[str, Any]], state: int) -> None:
    status, body = answer
    assert status == 409, body
    assert set(body) >= FIELDS, body
    assert body["state"] == state
    assert body["error"]


def test_the_ancestors_cycle(stack: Stack, device_name: str) -> None:
    board_token = _legacy_device(stack, device_name)
    operator = stack.hwq("token", "create", "--role", "operator", "--name", "teacher").strip()
    server = AncestorClient(stack, operator, device_name)
    board = AncestorClient(stack, board_token, device_name)

    status, rest = board.status()
    assert status == 200, rest
    assert set(rest) == FIELDS
    assert rest["state"] == 0
    _refused(board.post("hw_command_retrieval"), 0)
    _refused(board.post("hw_response_provide", hw_resp="2"), 0)
    _refused(server.post("server_analysis_provide", server_anal="ok"), 0)

    program = "print(1 + 1)"
    status, requested = server.post("hw_command_request", hw_comm=program)
    assert status == 200, requested
    assert requested["state"] == 1
    assert requested["hw_command"] == program
    _refused(server.post("hw_command_request", hw_comm="print(3)"), 1)
    _refused(board.post("hw_response_provide", hw_resp="2"), 1)

    assert board.poll_until(1)["state"] == 1
    status, collected = board.post("hw_command_retrieval")
    assert status == 200, collected
    assert collected["state"] == 2
    assert collected["hw_command"] == program
    _refused(board.post("hw_command_retrieval"), 2)
    _refused(server.post("server_analysis_provide", server_anal="ok"), 2)

    status, responded = board.post("hw_response_provide", hw_resp="2")
    assert status == 200, responded
    assert responded["state"] == 3
    assert responded["hw_response"] == "2"
    _refused(board.post("hw_response_provide", hw_resp="again"), 3)

    assert server.poll_until(3)["hw_response"] == "2"
    status, analysed = server.post("server_analysis_provide", server_anal="correct")
    assert status == 200, analysed
    assert analysed["state"] == 0
    assert analysed["server_analysis"] == "correct"

    # The same command, as the rest of the API sees it.
    items = stack.request("GET", f"/commands?device={device_name}").body["items"]
    assert len(items) == 1
    assert items[0]["kind"] == "python"
    assert items[0]["state"] == "done"
    assert items[0]["response"]["stdout"] == "2"
    assert items[0]["analysis"]["value"] == "correct"
    # Tokens sent as fields (in query strings too) never reach the logs.
    logs = stack.log("api")
    assert "/legacy" in logs
    assert board_token not in logs and operator not in logs


def _full_cycle(server: AncestorClient, board: AncestorClient, program: str) -> None:
    assert server.post("hw_command_request", hw_comm=program)[0] == 200
    assert board.post("hw_command_retrieval")[0] == 200
    assert board.post("hw_response_provide", hw_resp="2")[0] == 200
    assert server.post("server_analysis_provide", server_anal="ok")[0] == 200


def test_a_device_removed_or_renamed_leaves_no_legacy_command_behind(
    stack: Stack, device_name: str
) -> None:
    operator = stack.hwq("token", "create", "--role", "operator", "--name", "teacher").strip()
    server = AncestorClient(stack, operator, device_name)
    renamed = f"{device_name}r"
    client = redis.Redis.from_url(stack.redis_url)
    legacy_key = f"{stack.key_prefix}:device:{{}}:legacy"
    try:
        for leave in ("remove", "rename"):
            board = AncestorClient(stack, _legacy_device(stack, device_name), device_name)
            _full_cycle(server, board, f"print('{leave}')")
            assert server.status()[1]["hw_command"] == f"print('{leave}')"
            if leave == "remove":
                reply = stack.request("DELETE", f"/devices/{device_name}")
            else:
                reply = stack.request("PATCH", f"/devices/{device_name}", body={"name": renamed})
            assert reply.status in (200, 204), reply.body
            assert client.exists(legacy_key.format(device_name)) == 0
            if leave == "rename":
                assert AncestorClient(stack, operator, renamed).status()[1]["hw_command"] is None
                assert stack.request("DELETE", f"/devices/{renamed}").status == 204
            # A new device of the old name starts at rest, with no command of the old one's.
            _legacy_device(stack, device_name)
            status, fresh = server.status()
            assert status == 200, fresh
            assert (fresh["state"], fresh["hw_command"], fresh["hw_response"]) == (0, None, None)
            assert stack.request("DELETE", f"/devices/{device_name}").status == 204
    finally:
        client.close()


def test_legacy_refusals(stack: Stack, device_name: str) -> None:
    board_token = _legacy_device(stack, device_name)
    operator = stack.hwq("token", "create", "--role", "operator", "--name", "teacher").strip()

    status, body = AncestorClient(stack, operator, "nosuchdevice").status()
    assert status == 404
    assert body["status"] == 404
    assert AncestorClient(stack, "hwq_wrong", device_name).status()[0] == 401
    # A device's token requests nothing, and speaks for its own device only.
    assert (
        AncestorClient(stack, board_token, device_name).post(
            "hw_command_request", hw_comm="print(1)"
        )[0]
        == 403
    )
    other = f"{device_name}b"
    _legacy_device(stack, other)
    assert AncestorClient(stack, board_token, other).post("hw_command_retrieval")[0] == 403
    # A request needs its program.
    status, body = AncestorClient(stack, operator, device_name).post("hw_command_request")
    assert status == 422
    assert body["errors"][0]["field"] == "hw_comm"

    # A device that does not allow python programs is refused with the ancestor's fields.
    closed = f"{device_name}c"
    _legacy_device(stack, closed, allow_python=False)
    _refused(AncestorClient(stack, operator, closed).post("hw_command_request", hw_comm="x"), 0)


def test_json_and_bearer_header_are_accepted_too(stack: Stack, device_name: str) -> None:
    _legacy_device(stack, device_name)
    reply = stack.request("POST", "/legacy", body={"user": device_name, "command": "status_query"})
    assert reply.status == 200, reply.body
    assert reply.body["state"] == 0

"""Tokens can be listed and revoked, and a revoked token stops working at once everywhere.

Defect: a deleted token kept working for up to 60 s (each API process cached it), there was
no `GET /tokens`, `DELETE /tokens/{id}` nor `hwq token list|revoke`, no device tokens, and
events did not say who cancelled or analysed a command.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench.harness_http import http
from bench.local_stack import Stack
from hwq.embedded_redis import free_port
from tasks.auth import hash_token

TOKEN_FIELDS = {"id", "name", "role", "device", "created_at", "last_used_at"}


@pytest.fixture(scope="module")
def second_api(stack: Stack) -> Iterator[str]:
    """Another `hwq api` process on the same Redis and database; its base URL."""
    port = free_port()
    stack.spawn("api-2", "api", "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}/api/v1"
    stack.wait_for(lambda: http("GET", f"{base}/health").status == 200, "the second API")
    yield base
    stack.stop("api-2")


def new_token(stack: Stack, name: str, role: str = "operator") -> str:
    return stack.hwq("token", "create", "--role", role, "--name", name).strip()


def listed(stack: Stack, name: str) -> dict[str, Any]:
    reply = stack.request("GET", "/tokens")
    assert reply.status == 200, reply.body
    (item,) = [item for item in reply.body["items"] if item["name"] == name]
    return dict(item)


def test_a_revoked_token_is_refused_at_once_by_every_api_process(
    stack: Stack, second_api: str
) -> None:
    token = new_token(stack, "revoked-alice")
    # Both processes have the token in their caches.
    assert stack.request("GET", "/devices", token=token).status == 200
    assert http("GET", f"{second_api}/devices", token=token).status == 200

    item = listed(stack, "revoked-alice")
    assert set(item) == TOKEN_FIELDS
    assert item["role"] == "operator" and item["device"] is None
    body = str(stack.request("GET", "/tokens").body)
    assert token not in body and hash_token(token) not in body

    assert stack.request("DELETE", f"/tokens/{item['id']}").status == 204
    assert http("GET", f"{second_api}/devices", token=token).status == 401
    assert stack.request("GET", "/devices", token=token).status == 401
    assert stack.request("DELETE", f"/tokens/{item['id']}").status == 404
    # Other tokens are untouched.
    assert http("GET", f"{second_api}/devices", token=stack.admin_token).status == 200


def test_only_an_admin_sees_or_revokes_tokens(stack: Stack) -> None:
    operator = new_token(stack, "nosy-operator")
    assert stack.request("GET", "/tokens", token=operator).status == 403
    assert stack.request("DELETE", "/tokens/1", token=operator).status == 403


def test_last_used_is_kept_without_a_write_per_request(stack: Stack) -> None:
    token = new_token(stack, "busy-bob")
    assert listed(stack, "busy-bob")["last_used_at"] is None
    assert stack.request("GET", "/devices", token=token).status == 200
    first_use = listed(stack, "busy-bob")["last_used_at"]
    assert first_use is not None
    for _ in range(5):
        assert stack.request("GET", "/devices", token=token).status == 200
    assert listed(stack, "busy-bob")["last_used_at"] == first_use


def test_device_tokens_name_their_device_and_other_roles_refuse_one(stack: Stack) -> None:
    token = stack.hwq(
        "token", "create", "--role", "device", "--device", "bench-1", "--name", "pi-1"
    ).strip()
    assert token.startswith("hwq_")
    item = listed(stack, "pi-1")
    assert (item["role"], item["device"]) == ("device", "bench-1")

    missing = subprocess.run(
        [sys.executable, "-m", "hwq.cli", "token", "create", "--role", "device",
         "--name", "pi-2"],
        env=stack.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode != 0 and "--device" in missing.stderr
    stray = subprocess.run(
        [sys.executable, "-m", "hwq.cli", "token", "create", "--role", "viewer",
         "--name", "v", "--device", "bench-1"],
        env=stack.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stray.returncode != 0 and "only a device token" in stray.stderr


def test_hwq_token_list_and_revoke(stack: Stack) -> None:
    token = new_token(stack, "cli-carol")
    env = {**stack.env(), "HWQ_URL": stack.base, "HWQ_TOKEN": stack.admin_token}

    def hwq(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "hwq.cli", *args],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    table = hwq("token", "list")
    assert table.splitlines()[0].split() == [
        "id", "name", "role", "device", "created_at", "last_used_at"
    ]  # fmt: skip
    (row,) = [line.split() for line in table.splitlines() if "cli-carol" in line]
    assert hwq("token", "revoke", row[0]).strip() == f"revoked token {row[0]}"
    assert stack.request("GET", "/devices", token=token).status == 401
    assert "cli-carol" not in hwq("token", "list")


def test_events_name_who_cancelled_or_analysed(stack: Stack, device_name: str) -> None:
    alice = new_token(stack, "alice")
    stack.add_sim_device(device_name)
    stack.submit(device_name, "SLEEP 1500")
    queued = stack.submit(device_name, "*IDN?")
    reply = stack.request("POST", f"/commands/{queued}/cancel", token=alice)
    assert reply.status == 200, reply.body

    manual = stack.submit(device_name, "MEAS:VOLT?", analysis={"analyzer": "manual"})
    stack.wait_for(
        lambda: stack.request("GET", f"/commands/{manual}").body["state"] == "responded",
        "the manual command's reply",
    )
    reply = stack.request("POST", f"/commands/{manual}/analysis", token=alice, body={"value": 1})
    assert reply.status == 200, reply.body

    def details(command_id: str) -> list[str]:
        events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
        assert all(set(event) == {"state", "at", "detail"} for event in events)
        return [event["detail"] for event in events]

    assert details(queued)[-1] == "cancelled by alice"
    assert details(manual)[-1] == "analysis recorded by alice"


def test_a_revoked_token_cannot_submit_even_right_after_a_cached_submission(
    stack: Stack, second_api: str, device_name: str
) -> None:
    # Submissions check a cached token without a round trip of their own: the command's
    # create refuses them atomically if any token was revoked since (DESIGN §3: "revoke one
    # (204), at once on every API process").
    stack.add_sim_device(device_name, worker=False)
    token, bystander = new_token(stack, "revoked-carol"), new_token(stack, "bystander-dan")
    body = {"kind": "line", "payload": "*IDN?"}
    path = f"/devices/{device_name}/commands"
    for who in (token, bystander):
        assert stack.request("POST", path, token=who, body=body).status == 202
        assert http("POST", f"{second_api}{path}", token=who, body=body).status == 202
    queued = stack.device(device_name)["queue_depth"]

    item = listed(stack, "revoked-carol")
    assert stack.request("DELETE", f"/tokens/{item['id']}").status == 204
    refused = http("POST", f"{second_api}{path}", token=token, body=body)
    assert refused.status == 401, refused.body
    assert stack.request("POST", path, token=token, body=body).status == 401
    # Nothing of the refused submissions stays, and other tokens submit as before.
    assert stack.device(device_name)["queue_depth"] == queued
    assert http("POST", f"{second_api}{path}", token=bystander, body=body).status == 202
    assert stack.request("POST", path, token=bystander, body=body).status == 202
    assert stack.device(device_name)["queue_depth"] == queued + 2

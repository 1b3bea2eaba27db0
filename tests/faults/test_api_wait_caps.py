"""Caps on held long-polls: per token (429) and in all (503), each with Retry-After; a wait
whose client leaves gives its place back at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from bench.local_stack import Stack, running_stack

from raw_http import RawReply, read_reply, send_head

MAX_WAITS = 4
MAX_WAITS_PER_TOKEN = 2
# Time for waits sent on fresh connections to be held by the API, on a busy machine.
SETTLE_S = 2.0


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("hwq-wait-caps"),
        redis_url,
        HWQ_MAX_WAITS=str(MAX_WAITS),
        HWQ_MAX_WAITS_PER_TOKEN=str(MAX_WAITS_PER_TOKEN),
    ) as stack:
        yield stack


def _viewer(stack: Stack, name: str) -> str:
    return stack.hwq("token", "create", "--role", "viewer", "--name", name).strip()


def _open_wait(stack: Stack, command_id: str, token: str, wait_s: int = 30) -> socket.socket:
    return send_head(stack.api_port, "GET", f"/api/v1/commands/{command_id}?wait={wait_s}",
                     {"Authorization": f"Bearer {token}"})  # fmt: skip


def _refusal(stack: Stack, command_id: str, token: str) -> RawReply:
    sock = _open_wait(stack, command_id, token)
    try:
        return read_reply(sock, timeout=10)
    finally:
        sock.close()


def test_waits_past_a_tokens_cap_get_429_and_past_the_overall_cap_503(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "*IDN?")
    alice, bob, carol = (_viewer(stack, n) for n in ("alice", "bob", "carol"))
    held = [_open_wait(stack, command_id, alice) for _ in range(MAX_WAITS_PER_TOKEN)]
    try:
        time.sleep(SETTLE_S)
        per_token = _refusal(stack, command_id, alice)
        assert per_token.status == 429, per_token.body
        assert per_token.body["type"].endswith("/too-many-waits")
        assert int(per_token.headers["retry-after"]) > 0
        held += [_open_wait(stack, command_id, bob) for _ in range(MAX_WAITS - len(held))]
        time.sleep(SETTLE_S)
        overall = _refusal(stack, command_id, carol)
        assert overall.status == 503, overall.body
        assert int(overall.headers["retry-after"]) > 0
        # Other requests are not held waits: they still pass.
        assert stack.request("GET", f"/commands/{command_id}", token=carol).status == 200
    finally:
        for sock in held:
            sock.close()
    stack.request("POST", f"/commands/{command_id}/cancel")


def test_a_wait_whose_client_left_gives_its_place_back(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "*IDN?")
    dave = _viewer(stack, "dave")
    for sock in [_open_wait(stack, command_id, dave) for _ in range(MAX_WAITS_PER_TOKEN)]:
        time.sleep(SETTLE_S / 2)
        sock.close()
    time.sleep(SETTLE_S)
    reply = stack.request("GET", f"/commands/{command_id}?wait=1", token=dave)
    assert reply.status == 200, reply.body
    assert reply.body["state"] == "queued"
    stack.request("POST", f"/commands/{command_id}/cancel")

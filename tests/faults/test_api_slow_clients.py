"""Clients that hold the API's connections: big declared bodies without a token, bodies that
never finish, and hundreds of long-polls. None of them may keep /health from answering."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator

import pytest

from bench.local_stack import Stack, running_stack

from raw_http import read_reply, send_head, timed_get

BODY_LIMIT = 65536
BODY_TIMEOUT_S = 2.0
# The issue's own bound: /health answers within this while 500 waits are held.
HEALTH_BOUND_S = 0.1
HELD_WAITS = 500
# The attack: sockets that each declare a big body and send one byte of it.
SLOW_SOCKETS = 70


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose one token may hold every wait of the test, with a short body timeout."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-slow-clients"),
        redis_url,
        HWQ_MAX_BODY_BYTES=str(BODY_LIMIT),
        HWQ_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        HWQ_MAX_WAITS=str(HELD_WAITS + 50),
        HWQ_MAX_WAITS_PER_TOKEN=str(HELD_WAITS + 50),
    ) as stack:
        yield stack


def _health_s(stack: Stack) -> float:
    reply, seconds = timed_get(stack.api_port, "/api/v1/health")
    assert reply.status == 200, reply.body
    return seconds


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(stack: Stack) -> None:
    sock = send_head(stack.api_port, "POST", "/api/v1/devices/any/commands",
                     {"Content-Length": "2000000", "Content-Type": "application/json"},
                     body_start=b"{")  # fmt: skip
    try:
        reply = read_reply(sock, timeout=5)
    finally:
        sock.close()
    assert reply.status == 413
    assert reply.headers["content-type"] == "application/problem+json"
    assert str(BODY_LIMIT) in reply.body["detail"]
    # The unread rest of the body must not be taken for a next request.
    assert reply.headers["connection"] == "close"


def test_a_body_is_not_read_before_its_token_is_known(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Bearer hwq_not-a-token"}):
        sock = send_head(stack.api_port, "POST", "/api/v1/devices/any/commands",
                         {"Content-Length": "1000", "Content-Type": "application/json",
                          **headers})  # fmt: skip
        try:
            reply = read_reply(sock, timeout=5)
        finally:
            sock.close()
        assert reply.status == 401, reply.body
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert reply.headers["connection"] == "close"


def test_a_body_that_does_not_arrive_in_time_is_408(stack: Stack) -> None:
    sock = send_head(stack.api_port, "POST", "/api/v1/devices/any/commands",
                     {"Content-Length": "100", "Content-Type": "application/json",
                      "Authorization": f"Bearer {stack.admin_token}"},
                     body_start=b'{"kind": ')  # fmt: skip
    started = time.monotonic()
    try:
        reply = read_reply(sock, timeout=BODY_TIMEOUT_S + 10)
    finally:
        sock.close()
    assert reply.status == 408, reply.body
    assert reply.headers["content-type"] == "application/problem+json"
    assert BODY_TIMEOUT_S - 0.5 < time.monotonic() - started < BODY_TIMEOUT_S + 10


def test_a_chunked_body_past_the_limit_is_413_once_it_passes(stack: Stack) -> None:
    sock = send_head(stack.api_port, "POST", "/api/v1/devices/any/commands",
                     {"Transfer-Encoding": "chunked", "Content-Type": "application/json",
                      "Authorization": f"Bearer {stack.admin_token}"})  # fmt: skip
    try:
        chunk = b"x" * 16384
        for _ in range(BODY_LIMIT // len(chunk) + 1):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        # The last chunk is never sent: the answer must not wait for it.
        reply = read_reply(sock, timeout=5)
    finally:
        sock.close()
    assert reply.status == 413, reply.body


def test_unauthenticated_big_bodies_left_open_do_not_stall_health(stack: Stack) -> None:
    """The issue's slowloris: big declared bodies, one byte each, sockets kept open."""
    sockets: list[socket.socket] = []
    try:
        for i in range(SLOW_SOCKETS):
            length = "2000000" if i % 2 else "60000"  # over the limit, and under it
            sockets.append(send_head(stack.api_port, "POST", "/api/v1/devices/any/commands",
                                     {"Content-Length": length}, body_start=b"{"))  # fmt: skip
        answers = [read_reply(sock, timeout=10).status for sock in sockets]
        assert set(answers) == {401, 413}
        # The sockets stay open; the API holds nothing for them.
        timings = [_health_s(stack) for _ in range(10)]
    finally:
        _close_all(sockets)
    assert max(timings) < 2.0, timings


def test_health_answers_within_100_ms_while_500_waits_are_held(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "*IDN?")
    path = f"/api/v1/commands/{command_id}?wait=60"
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    sockets: list[socket.socket] = []
    try:
        for _ in range(HELD_WAITS):
            sockets.append(send_head(stack.api_port, "GET", path, auth))
        # Every wait has reached Redis once each blocks there; give a busy machine time.
        time.sleep(5)
        timings = sorted(_health_s(stack) for _ in range(15))
        assert statistics.median(timings) < HEALTH_BOUND_S, timings
        # The waits were held, not refused: each ends with the command once it settles.
        cancelled = stack.request("POST", f"/commands/{command_id}/cancel")
        assert cancelled.status == 200, cancelled.body
        bodies = [read_reply(sock, timeout=60).body for sock in sockets]
    finally:
        _close_all(sockets)
    others = [body for body in bodies if body.get("state") != "cancelled"]
    assert not others, (len(others), others[:3])

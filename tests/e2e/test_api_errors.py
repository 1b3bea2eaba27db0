"""Every error status of the API, produced over HTTP by a request that deserves it."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.harness_http import Reply, http
from bench.local_stack import Stack, running_stack
from hwq.embedded_redis import free_port

QUEUE_CAP = 3


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with a small queue cap and body limit, so 429 and 413 are cheap to reach."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-errors"),
        redis_url,
        HWQ_QUEUE_CAP=str(QUEUE_CAP),
        HWQ_MAX_BODY_BYTES="4096",
    ) as stack:
        yield stack


def assert_problem(reply: Reply, status: int) -> dict:  # type: ignore[type-arg]
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert {"type", "title", "status", "detail"} <= set(reply.body)
    assert reply.body["status"] == status
    return dict(reply.body)


def test_malformed_json_is_400(stack: Stack) -> None:
    stack.add_sim_device("errs", worker=False)
    reply = stack.request("POST", "/devices/errs/commands", raw=b'{"kind": "line", "payload"')
    assert_problem(reply, 400)


def test_unknown_fields_and_wrong_types_are_422_naming_the_field(stack: Stack) -> None:
    unknown = stack.request(
        "POST", "/devices/errs/commands", body={"kind": "line", "payload": "x", "colour": "red"}
    )
    assert "colour" in str(assert_problem(unknown, 422)["errors"])
    wrong = stack.request(
        "POST", "/devices/errs/commands", body={"kind": "line", "payload": "x", "timeout_s": "5"}
    )
    assert "timeout_s" in str(assert_problem(wrong, 422)["errors"])
    bad_limit = stack.request("GET", "/commands?limit=0")
    assert_problem(bad_limit, 422)


def test_a_body_over_the_limit_is_413(stack: Stack) -> None:
    reply = stack.request(
        "POST", "/devices/errs/commands", body={"kind": "line", "payload": "x" * 10_000}
    )
    assert_problem(reply, 413)


def test_an_unknown_device_or_command_is_404(stack: Stack) -> None:
    assert_problem(
        stack.request("POST", "/devices/nosuch/commands", body={"kind": "line", "payload": "x"}),
        404,
    )
    assert_problem(stack.request("GET", f"/commands/{uuid.uuid4()}"), 404)


def test_a_missing_or_bad_token_is_401(stack: Stack) -> None:
    missing = http("GET", stack.base + "/devices")
    assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(http("GET", stack.base + "/devices", token="hwq_not-a-token"), 401)


def test_a_viewer_cannot_submit_403(stack: Stack) -> None:
    viewer = stack.hwq("token", "create", "--role", "viewer", "--name", "student").strip()
    assert stack.request("GET", "/devices", token=viewer).status == 200
    reply = stack.request(
        "POST", "/devices/errs/commands", token=viewer, body={"kind": "line", "payload": "x"}
    )
    assert_problem(reply, 403)


def test_cancelling_a_finished_command_is_409(stack: Stack) -> None:
    command_id = stack.submit("errs", "*IDN?")
    assert stack.request("POST", f"/commands/{command_id}/cancel").status == 200
    assert_problem(stack.request("POST", f"/commands/{command_id}/cancel"), 409)
    assert_problem(
        stack.request("POST", f"/commands/{command_id}/analysis", body={"value": 1}), 409
    )


def test_a_full_device_queue_is_429_and_nothing_is_kept(stack: Stack) -> None:
    stack.add_sim_device("full", worker=False)
    accepted = [stack.submit("full", f"ECHO {i}") for i in range(QUEUE_CAP)]
    reply = stack.request("POST", "/devices/full/commands", body={"kind": "line", "payload": "x"})
    assert_problem(reply, 429)
    history = stack.request("GET", "/commands?device=full").body["items"]
    assert sorted(c["id"] for c in history) == sorted(accepted)
    for command_id in accepted:
        stack.request("POST", f"/commands/{command_id}/cancel")


def test_a_busy_device_cannot_be_deleted_or_renamed_409(stack: Stack) -> None:
    stack.add_sim_device("busy", worker=False)
    command_id = stack.submit("busy", "ECHO x")
    assert_problem(stack.request("DELETE", "/devices/busy"), 409)
    assert_problem(stack.request("PATCH", "/devices/busy", body={"name": "other"}), 409)
    stack.request("POST", f"/commands/{command_id}/cancel")
    renamed = stack.request("PATCH", "/devices/busy", body={"name": "other"})
    assert renamed.status == 200 and renamed.body["name"] == "other"
    assert stack.request("GET", "/commands?device=other").body["items"][0]["id"] == command_id
    assert stack.request("DELETE", "/devices/other").status == 204
    assert_problem(stack.request("GET", "/devices/other"), 404)


def test_an_unreachable_database_is_503_and_nothing_is_half_created(
    stack: Stack, redis_url: str, tmp_path: Path
) -> None:
    dead_port = free_port()
    broken = Stack(
        home=tmp_path / "broken",
        redis_url=redis_url,
        key_prefix=f"e2e-dead-{uuid.uuid4().hex[:6]}",
        extra_env={"HWQ_DATABASE_URL": f"postgresql+psycopg://hwq@127.0.0.1:{dead_port}/hwq"},
    )
    try:
        broken.spawn("api", "api", "--host", "127.0.0.1", "--port", str(broken.api_port))
        broken.wait_for(lambda: http("GET", broken.base + "/health").status == 503, "the API")
        health = http("GET", broken.base + "/health")
        assert health.body["database"] == "down" and health.body["redis"] == "ok"
        reply = http(
            "POST", broken.base + "/devices/errs/commands", token=stack.admin_token,
            body={"kind": "line", "payload": "x"},
        )  # fmt: skip
        assert_problem(reply, 503)
        client = redis.Redis.from_url(redis_url)
        assert list(client.scan_iter(match=f"{broken.key_prefix}:*")) == []
    finally:
        broken.close()


def test_an_unreachable_redis_is_503_and_the_ledger_gets_no_row(
    stack: Stack, tmp_path: Path
) -> None:
    home = tmp_path / "noredis"
    broken = Stack(home=home, redis_url=f"redis://127.0.0.1:{free_port()}/0", key_prefix="x")
    try:
        broken.hwq("migrate")
        token = broken.hwq("token", "create", "--role", "admin", "--name", "t").strip()
        broken.spawn("api", "api", "--host", "127.0.0.1", "--port", str(broken.api_port))
        broken.wait_for(lambda: http("GET", broken.base + "/health").status == 503, "the API")
        reply = http(
            "POST", broken.base + "/devices/errs/commands", token=token,
            body={"kind": "line", "payload": "x"},
        )  # fmt: skip
        assert_problem(reply, 503)
        with sqlite3.connect(home / "hwq.db") as db:
            assert db.execute("SELECT COUNT(*) FROM commands").fetchone() == (0,)
    finally:
        broken.close()

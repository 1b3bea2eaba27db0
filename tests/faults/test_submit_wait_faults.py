"""Submit-and-wait (`POST …/commands?wait=S`) when the client leaves or Redis dies mid-wait:
the command was accepted, so it is never lost, and the answer never reads as a refusal."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.local_stack import Stack, running_stack
from hwq.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server for this module alone: one test stops it."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-submit-wait"), persist=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("hwq-submit-wait"), own_redis.url) as stack:
        yield stack


def _post_wait(stack: Stack, device: str, wait_s: float, timeout_s: float) -> httpx.Response:
    return httpx.post(
        f"{stack.base}/devices/{device}/commands",
        params={"wait": wait_s},
        json={"kind": "line", "payload": "*IDN?"},
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=timeout_s,
    )


def test_a_client_that_leaves_mid_wait_leaves_its_command_to_run(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)

    with pytest.raises(httpx.ReadTimeout):
        _post_wait(stack, device_name, wait_s=30, timeout_s=1.5)

    [command] = stack.request("GET", f"/commands?device={device_name}").body["items"]
    assert command["state"] == "queued"
    stack.start_worker(device_name)
    done = stack.wait(command["id"])
    assert done["state"] == "done" and done["response"]["text"].startswith("HWQ,SIM")


def test_redis_dying_mid_wait_answers_202_as_the_command_stood(
    stack: Stack, own_redis: EmbeddedRedis, device_name: str
) -> None:
    """Run last in the module: Redis stays down."""
    stack.add_sim_device(device_name, worker=False)
    answer: dict[str, Any] = {}

    def submit() -> None:
        answer["reply"] = _post_wait(stack, device_name, wait_s=30, timeout_s=60)

    waiting = threading.Thread(target=submit)
    started = time.monotonic()
    waiting.start()
    time.sleep(2)  # the submission is accepted and its wait held
    own_redis.stop()
    waiting.join(timeout=60)

    reply: httpx.Response = answer["reply"]
    assert reply.status_code == 202, reply.text
    assert reply.json()["state"] == "queued"
    assert reply.headers["Location"] == f"/api/v1/commands/{reply.json()['id']}"
    assert time.monotonic() - started < 25  # answered when Redis went, not at the wait's end

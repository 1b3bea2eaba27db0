"""Flower shows every command's outcome as it is, with its reason, and `celery inspect` works.

Guards against: Flower showed a timed-out command as SUCCESS with result None (every command
the device worker ran looked succeeded), never heard of commands that ended without a device
worker (cancelled, expired, interrupted), and `celery -A tasks.celery_app inspect active`, as
the README suggests, failed with "has no attribute 'celery'".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.local_stack import Stack, running_stack

from flower_watch import FlowerWatch

# Leases lapse this long after a command's timeout, so an interruption shows within seconds.
LEASE_GRACE_S = "2"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose leases lapse two seconds after a command's timeout."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-flower"), redis_url, HWQ_LEASE_GRACE_S=LEASE_GRACE_S
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def device(stack: Stack) -> str:
    """A simulated device of the module's, which allows python (that its host does not run)."""
    name = f"f{uuid.uuid4().hex[:8]}"
    stack.add_sim_device(name)
    reply = stack.request("PATCH", f"/devices/{name}", body={"options": {"python": True}})
    assert reply.status == 200, reply.body
    return name


@pytest.fixture(scope="module")
def flower(stack: Stack, device: str) -> FlowerWatch:
    """Flower, once it sees the device's commands."""
    watch = FlowerWatch(stack)
    watch.follow(device)
    return watch


def _ended(flower: FlowerWatch, command_id: str, state: str) -> dict[str, Any]:
    return flower.wait_task(command_id, lambda task: task["state"] == state)


def test_an_answered_command_shows_succeeded_with_its_reply(
    stack: Stack, device: str, flower: FlowerWatch
) -> None:
    command_id = stack.submit(device, "ECHO shown in flower")
    assert stack.wait(command_id)["state"] == "done"

    task = _ended(flower, command_id, "SUCCESS")

    assert "shown in flower" in task["result"]
    assert task["worker"] == f"{device}@e2e"


def test_a_timed_out_command_shows_failed_and_why(
    stack: Stack, device: str, flower: FlowerWatch
) -> None:
    command_id = stack.submit(device, "SLEEP 2000", timeout_s=0.5)
    assert stack.wait(command_id)["state"] == "timed_out"

    task = _ended(flower, command_id, "FAILURE")

    assert task["exception"].startswith("TimedOut('no complete reply"), task
    assert "0.5 s" in task["exception"]


def test_a_failed_command_shows_failed_and_why(
    stack: Stack, device: str, flower: FlowerWatch
) -> None:
    reply = stack.request(
        "POST", f"/devices/{device}/commands", body={"kind": "python", "payload": "print(1)"}
    )
    assert reply.status == 202, reply.body
    ended = stack.wait(reply.body["id"])
    assert ended["state"] == "failed"

    task = _ended(flower, reply.body["id"], "FAILURE")

    assert task["exception"] == f"Failed({ended['error']!r})"


def test_a_command_cancelled_while_queued_shows_revoked_and_why(
    stack: Stack, device: str, flower: FlowerWatch
) -> None:
    blocker = stack.submit(device, "SLEEP 1500")
    command_id = stack.submit(device, "ECHO never")
    assert stack.request("POST", f"/commands/{command_id}/cancel").status == 200

    task = _ended(flower, command_id, "REVOKED")

    # Who cancelled it is in the reason, as in the command's events.
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    assert task["exception"] == f"Cancelled({events[-1]['detail']!r})"
    assert events[-1]["detail"].startswith("cancelled by ")
    assert task["name"] == "hwq.execute"
    assert stack.wait(blocker)["state"] == "done"
    assert "ECHO never" not in stack.sim_log(device)


def test_an_expired_command_shows_revoked_as_expired(
    stack: Stack, device: str, flower: FlowerWatch
) -> None:
    blocker = stack.submit(device, "SLEEP 2000")
    command_id = stack.submit(device, "ECHO too late", expires_s=0.5)
    assert stack.wait(command_id)["state"] == "expired"

    task = _ended(flower, command_id, "REVOKED")

    assert task["exception"] == "Expired('expired before dispatch')"
    assert stack.wait(blocker)["state"] == "done"


def test_an_interrupted_command_shows_failed_and_why(stack: Stack, flower: FlowerWatch) -> None:
    name = f"i{uuid.uuid4().hex[:8]}"
    stack.add_sim_device(name)
    command_id = stack.submit(name, "SLEEP 6000", timeout_s=4)
    stack.wait_for(lambda: "SLEEP 6000" in stack.sim_log(name), "the command on the wire")
    stack.stop(f"device-{name}", signal.SIGKILL)
    assert stack.wait(command_id, 30)["state"] == "interrupted"

    task = _ended(flower, command_id, "FAILURE")

    assert task["exception"].startswith("Interrupted('worker vanished after claiming"), task


def test_celery_inspect_active_lists_the_running_command(stack: Stack, device: str) -> None:
    command_id = stack.submit(device, "SLEEP 3000")
    stack.wait_for(lambda: "SLEEP 3000" in stack.sim_log(device), "the command on the wire")

    # The command the README gives, from outside every hwq process.
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks.celery_app", "inspect", "active",
         "--destination", f"{device}@e2e", "--timeout", "10"],
        env=stack.env(with_database=False), capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert command_id in result.stdout
    assert stack.wait(command_id)["state"] == "done"

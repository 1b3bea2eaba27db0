"""A device nobody serves is named as such: `hwq run` says it is offline, a worker refuses a
device that is not registered, and a long wait on its queued command answers.

Guards against: `hwq run` on a device without a worker said only "still queued after 3 s";
`hwq device-worker nosuch` started and reported ready for a device that is not registered;
a long-poll (`?wait`) longer than five seconds on a command still queued answered 503, as
if Redis were gone.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.local_stack import Stack

# A worker for an unknown device must refuse well within this; the old one ran on.
REFUSAL_WITHIN_S = 60


def _hwq(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env(), "HWQ_URL": stack.base.removesuffix("/api/v1"),
           "HWQ_TOKEN": stack.admin_token}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "hwq.cli", *args],
        env=env, capture_output=True, text=True, timeout=REFUSAL_WITHIN_S,
    )  # fmt: skip


def test_hwq_run_says_the_device_is_offline(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name, worker=False)

    result = _hwq(stack, "run", device_name, "*IDN?", "--wait", "2")

    assert result.returncode == 1
    assert f"device {device_name} is offline" in result.stderr, result.stderr
    assert "still queued" in result.stderr


def test_a_long_wait_on_a_queued_command_answers_after_it(stack: Stack, device_name: str) -> None:
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "*IDN?")

    started = time.monotonic()
    reply = stack.request("GET", f"/commands/{command_id}?wait=8")

    assert reply.status == 200, reply.body
    assert reply.body["state"] == "queued"
    assert time.monotonic() - started >= 7.5


def test_a_worker_refuses_a_device_that_is_not_registered(stack: Stack, device_name: str) -> None:
    result = _hwq(stack, "device-worker", device_name)

    assert result.returncode != 0
    assert f"device {device_name!r} is not registered" in result.stderr, result.stderr
    assert stack.request("GET", f"/devices/{device_name}").status == 404


def test_a_device_ensured_at_migration_gets_its_worker(stack: Stack, device_name: str) -> None:
    # As docker-compose does it: the device is registered beside the schema, and its worker,
    # holding no database credentials, starts on it with an in-process simulator.
    assert f"registered device {device_name}" in stack.hwq("migrate", "--ensure-device",
                                                            device_name)  # fmt: skip
    stack.spawn(f"device-{device_name}", "device-worker", device_name, "--simulate", "scpi",
                with_database=False)  # fmt: skip
    stack.wait_for(lambda: stack.device(device_name)["online"], f"worker of {device_name}")

    command_id = stack.submit(device_name, "*IDN?")

    done = stack.wait(command_id)
    assert done["state"] == "done" and done["response"]["text"].startswith("HWQ,SIM"), done

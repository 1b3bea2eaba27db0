"""`python` commands over HTTP, run by real device workers beside simulated instruments."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench.local_stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose device workers' host allows device programs."""
    home = tmp_path_factory.mktemp("hwq-programs")
    with running_stack(home, redis_url, HWQ_ALLOW_PYTHON="true") as stack:
        yield stack


def _device(stack: Stack, python: bool = True) -> str:
    name = f"p{uuid.uuid4().hex[:8]}"
    stack.add_sim_device(name)
    reply = stack.request("PATCH", f"/devices/{name}", body={"options": {"python": python}})
    assert reply.status == 200, reply.body
    return name


def _program(stack: Stack, device: str, source: str, **fields: Any) -> dict[str, Any]:
    body = {"kind": "python", "payload": textwrap.dedent(source), **fields}
    reply = stack.request("POST", f"/devices/{device}/commands", body=body)
    assert reply.status == 202, reply.body
    return stack.wait(reply.body["id"])


def test_a_program_queries_its_device_and_answers_its_output(stack: Stack) -> None:
    device = _device(stack)
    command = _program(
        stack,
        device,
        """
        import sys
        import device
        print(device.query('*IDN?'))
        print(device.query('MEAS:VOLT?', timeout=2))
        print('to stderr', file=sys.stderr)
        sys.exit(4)
        """,
    )
    assert command["state"] == "done", command
    response = command["response"]
    idn, volts = response["stdout"].splitlines()
    assert idn.startswith("HWQ,SIM")
    float(volts)
    assert response["stderr"] == "to stderr\n"
    assert response["exit_code"] == 4


def test_a_device_that_does_not_allow_programs_refuses_them(stack: Stack) -> None:
    device = _device(stack, python=False)
    body = {"kind": "python", "payload": "print(1)"}
    refused = stack.request("POST", f"/devices/{device}/commands", body=body)
    assert refused.status == 409, refused.body
    assert "options.python" in refused.body["detail"]


def test_a_host_that_does_not_allow_programs_fails_them_saying_so(stack: Stack) -> None:
    stack.extra_env["HWQ_ALLOW_PYTHON"] = "false"
    try:
        device = _device(stack)
    finally:
        stack.extra_env["HWQ_ALLOW_PYTHON"] = "true"
    command = _program(stack, device, "print('never runs')")
    assert command["state"] == "failed", command
    assert "does not allow python programs" in command["error"]
    assert "HWQ_ALLOW_PYTHON" in command["error"]
    # The device itself still answers.
    assert stack.wait(stack.submit(device, "ECHO fine"))["response"] == {"text": "fine"}


def test_a_program_past_its_timeout_ends_timed_out_with_its_output(stack: Stack) -> None:
    device = _device(stack)
    command = _program(stack, device, "print('begun', flush=True)\nwhile True: pass", timeout_s=1.0)
    assert command["state"] == "timed_out", command
    assert command["error"] == "timed_out: the program did not finish within 1 s"
    assert command["response"]["stdout"] == "begun\n"
    assert stack.wait(stack.submit(device, "ECHO next"))["response"] == {"text": "next"}


def test_what_a_program_leaves_on_the_port_is_not_the_next_reply(stack: Stack) -> None:
    device = _device(stack)
    command = _program(stack, device, "device.write('ECHO left behind\\n')")
    assert command["state"] == "done", command
    after = stack.wait(stack.submit(device, "ECHO mine"))
    assert after["response"] == {"text": "mine"}, after


def test_a_program_that_attacks_its_worker_leaves_it_serving(stack: Stack) -> None:
    device = _device(stack)
    command = _program(
        stack,
        device,
        """
        import os, signal
        for pid in [os.getppid()] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        print('done')
        """,
    )
    assert command["state"] == "done", command
    assert command["response"]["stdout"] == "done\n", command
    assert stack.device(device)["online"]
    assert stack.wait(stack.submit(device, "ECHO alive"))["response"] == {"text": "alive"}

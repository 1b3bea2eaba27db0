"""`hwq poll-device` as a real process serving a simulator on a pseudo-terminal, against real
API processes: commands answered, timeouts, presence, an API restart, an agent killed
mid-command and started again, a clean stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import redis

from bench.local_stack import Stack
from hwq.poll_agent import STARTED_BEFORE_ERROR

pytestmark = pytest.mark.timeout(300)


def _agent_device(stack: Stack, name: str, *agent_args: str, **options: object) -> None:
    """A simulator, its http-poll device, and an agent serving it with a device token."""
    link = stack.home / "dev" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    stack.spawn(f"sim-{name}", "sim", "--kind", "scpi", "--name", name, "--home",
                str(stack.home), "--link", str(link), with_database=False)  # fmt: skip
    stack.wait_for(link.exists, f"simulator {name}")
    spec = {"name": name, "transport": "http-poll", "codec": "line", "options": options}
    reply = stack.request("POST", "/devices", body=spec)
    assert reply.status == 201, reply.body
    token = stack.hwq("token", "create", "--role", "device", "--name", f"{name}-agent",
                      "--device", name).strip()  # fmt: skip
    _start_agent(stack, name, "--token", token, *agent_args)
    stack.wait_for(lambda: stack.device(name)["online"], f"agent of {name}")


def _start_agent(stack: Stack, name: str, *agent_args: str) -> None:
    url = f"http://127.0.0.1:{stack.api_port}"
    link = stack.home / "dev" / name
    stack.spawn(f"agent-{name}", "poll-device", name, "--url", url, "--port", str(link),
                "--wait", "5", *agent_args, with_database=False)  # fmt: skip


def test_the_agent_answers_commands_and_times_out_slow_ones(stack: Stack, device_name: str) -> None:
    _agent_device(stack, device_name)
    first = stack.wait(stack.submit(device_name, "ECHO hello"))
    assert first["state"] == "done", first
    assert first["response"] == {"text": "hello"}
    idn = stack.wait(stack.submit(device_name, "*IDN?"))
    assert idn["response"]["text"].startswith("HWQ,SIM")

    slow = stack.wait(stack.submit(device_name, "SLEEP 3000", timeout_s=1))
    assert slow["state"] == "timed_out", slow
    # The slow command's late OK is not taken for the next command's answer.
    after = stack.wait(stack.submit(device_name, "ECHO after"))
    assert after["response"] == {"text": "after"}, after
    assert stack.device(device_name)["online"] is True
    assert "token" not in stack.log(f"agent-{device_name}").lower().replace("--token", "")


def test_python_is_refused_by_an_agent_not_allowed_to_run_it(
    stack: Stack, device_name: str
) -> None:
    _agent_device(stack, device_name, python=True)
    reply = stack.request("POST", f"/devices/{device_name}/commands",
                          body={"kind": "python", "payload": "print(1)"})  # fmt: skip
    assert reply.status == 202, reply.body
    ended = stack.wait(reply.body["id"])
    assert ended["state"] == "failed", ended
    assert "--allow-python" in ended["error"]


def test_an_allowed_program_runs_in_the_sandbox_and_reaches_the_device(
    stack: Stack, device_name: str
) -> None:
    _agent_device(stack, device_name, "--allow-python", python=True)
    source = "print(6 * 7)\nprint(device.query('ECHO from the program'))\n"
    reply = stack.request("POST", f"/devices/{device_name}/commands",
                          body={"kind": "python", "payload": source, "timeout_s": 30})  # fmt: skip
    assert reply.status == 202, reply.body
    ended = stack.wait(reply.body["id"], seconds=60)
    assert ended["state"] == "done", ended
    assert ended["response"]["stdout"] == "42\nfrom the program\n", ended
    assert ended["response"]["exit_code"] == 0


def test_the_agent_survives_an_api_restart_and_runs_nothing_twice(
    stack: Stack, device_name: str
) -> None:
    _agent_device(stack, device_name)
    before = stack.wait(stack.submit(device_name, "ECHO before"))
    assert before["state"] == "done"

    stack.stop("api")
    time.sleep(3)  # the agent's polls fail meanwhile; it backs off and keeps trying
    stack.spawn("api", "api", "--host", "127.0.0.1", "--port", str(stack.api_port))
    stack.wait_for(lambda: stack.request("GET", "/health").status == 200, "the API again")

    ids = [stack.submit(device_name, f"ECHO again{i}") for i in range(3)]
    for i, command_id in enumerate(ids):
        ended = stack.wait(command_id, seconds=90)
        assert ended["response"] == {"text": f"again{i}"}, ended
    lines = stack.sim_log(device_name).splitlines()
    for text in ("ECHO before", "ECHO again0", "ECHO again1", "ECHO again2"):
        assert sum(text in line for line in lines) == 1, lines


def test_an_agent_killed_mid_command_and_started_again_does_not_run_it_again(
    stack: Stack, device_name: str
) -> None:
    _agent_device(stack, device_name)
    started = stack.processes[f"agent-{device_name}"].args
    token = started[started.index("--token") + 1]
    command_id = stack.submit(device_name, "SLEEP 3000", timeout_s=6)
    stack.wait_for(lambda: "SLEEP 3000" in stack.sim_log(device_name), "the command on the port")
    assert stack.request("GET", f"/commands/{command_id}").body["state"] == "dispatched"

    stack.stop(f"agent-{device_name}", signal.SIGKILL)
    _start_agent(stack, device_name, "--token", token)
    # The command the killed agent had collected ends timed_out; it is not handed out again.
    ended = stack.wait(command_id, seconds=60)
    assert ended["state"] == "timed_out", ended
    after = stack.wait(stack.submit(device_name, "ECHO after", timeout_s=10), seconds=60)
    assert after["response"] == {"text": "after"}, after
    lines = stack.sim_log(device_name).splitlines()
    assert sum("SLEEP 3000" in line for line in lines) == 1, lines
    # The started command was written down before it ran, where the agent finds it again.
    journal = stack.home / f"poll-{device_name}.journal"
    assert command_id in journal.read_text().split()


def test_a_command_handed_back_after_the_server_lost_it_is_not_run_again(
    stack: Stack, device_name: str
) -> None:
    _agent_device(stack, device_name)
    started = stack.processes[f"agent-{device_name}"].args
    token = started[started.index("--token") + 1]
    # Idempotent: once its live state is gone, the server restores it from the ledger and
    # queues it again, so the device is handed a command it has started before.
    command_id = stack.submit(device_name, "SLEEP 3000", timeout_s=120, idempotent=True)
    stack.wait_for(lambda: "SLEEP 3000" in stack.sim_log(device_name), "the command on the port")
    stack.stop(f"agent-{device_name}", signal.SIGKILL)
    time.sleep(2)  # the recorder copies the dispatch to the ledger
    client = redis.Redis.from_url(stack.redis_url)
    try:
        assert client.delete(f"{stack.key_prefix}:cmd:{command_id}") == 1
    finally:
        client.close()
    _start_agent(stack, device_name, "--token", token)

    # The reaper restores it once it is older than its grace, and the agent refuses it.
    ended = stack.wait(command_id, seconds=120)
    assert ended["state"] == "failed", ended
    assert STARTED_BEFORE_ERROR in ended["error"], ended
    events = stack.request("GET", f"/commands/{command_id}/events").body["items"]
    assert any("restored from the ledger" in (e["detail"] or "") for e in events), events
    lines = stack.sim_log(device_name).splitlines()
    assert sum("SLEEP 3000" in line for line in lines) == 1, lines


def _hwq_client(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.env(), "HWQ_URL": stack.base.removesuffix("/api/v1"),
           "HWQ_TOKEN": stack.admin_token}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "hwq.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_hwq_run_works_on_a_polled_device_as_on_a_serial_one(
    stack: Stack, device_name: str
) -> None:
    _agent_device(stack, device_name)
    done = _hwq_client(stack, "run", device_name, "ECHO from the command line")
    assert (done.returncode, done.stdout) == (0, "from the command line\n"), done.stderr
    checked = _hwq_client(stack, "run", device_name, "MEAS:VOLT?", "--analysis", "number",
                          "--param", "max=-1000")  # fmt: skip
    assert checked.returncode == 3, checked.stderr
    assert "verdict" in checked.stderr.lower() or "fail" in checked.stderr.lower()
    slow = _hwq_client(stack, "run", device_name, "SLEEP 3000", "--timeout", "1")
    assert slow.returncode == 1
    assert "ended timed_out" in slow.stderr, slow.stderr

    # A polled device with no agent is named offline, and how it would be served is said.
    idle = f"{device_name}i"
    spec = {"name": idle, "transport": "http-poll"}
    assert stack.request("POST", "/devices", body=spec).status == 201
    queued = _hwq_client(stack, "run", idle, "*IDN?", "--wait", "2")
    assert queued.returncode == 1
    assert f"device {idle} is offline: no agent polls for it" in queued.stderr, queued.stderr
    assert f"hwq poll-device {idle}" in queued.stderr
    assert "still queued" in queued.stderr


def test_sigterm_stops_the_agent_cleanly(stack: Stack, device_name: str) -> None:
    _agent_device(stack, device_name)
    process = stack.processes.pop(f"agent-{device_name}")
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert code == 0, stack.log(f"agent-{device_name}")
    # Nothing it was holding is lost: a command submitted now waits queued for the device.
    queued = stack.submit(device_name, "ECHO later")
    time.sleep(1)
    assert stack.request("GET", f"/commands/{queued}").body["state"] == "queued"

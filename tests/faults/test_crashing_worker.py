"""A device worker that keeps crashing ends `failed`, with the reason and the worker's last log
lines, while its host agent lives on and serves its other devices; a settings change tries it
again."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from bench.host_fleet import HostFleet
from bench.local_stack import Stack


@pytest.fixture
def fleet(stack: Stack) -> Iterator[HostFleet]:
    fleet = HostFleet(stack)
    yield fleet
    for name in [n for n in stack.processes if n.startswith(("host-", "sim-"))]:
        stack.stop(name)
    fleet.close()


def test_rejected_settings_end_failed_and_a_fix_serves_again(
    fleet: HostFleet, stack: Stack
) -> None:
    host = f"h{uuid.uuid4().hex[:6]}"
    good, bad = f"g{uuid.uuid4().hex[:7]}", f"x{uuid.uuid4().hex[:7]}"
    good_link, bad_link = fleet.plug_adapter(good, good), fleet.plug_adapter(bad, bad)
    fleet.start_agent(host)
    fleet.register(good, str(good_link), host)
    fleet.register(bad, str(bad_link), host)
    fleet.wait_presence(good, "online")
    # A setting the API would refuse, written past it: every start of the worker ends at once.
    fleet.put(bad, options={"idle_ms": 0})

    # Backoff 1 + 2 + 4 + 8 s between five crashes, each start a second or more.
    fleet.wait_presence(bad, "failed", timeout=90)
    error = fleet.error(bad)
    assert "exited with status" in error
    assert "idle_ms" in error, error  # the worker's own words, from its log
    assert stack.processes[f"host-{host}"].poll() is None
    assert stack.wait(stack.submit(good, "ECHO still"))["response"] == {"text": "still"}

    fleet.put(bad, options={})
    fleet.wait_presence(bad, "online", timeout=30)
    assert fleet.error(bad) == ""
    assert stack.wait(stack.submit(bad, "ECHO fixed"))["response"] == {"text": "fixed"}


def test_a_worker_killed_again_and_again_ends_failed(fleet: HostFleet, stack: Stack) -> None:
    host, name = f"h{uuid.uuid4().hex[:6]}", f"k{uuid.uuid4().hex[:7]}"
    link = fleet.plug_adapter(name, name)
    fleet.start_agent(host)
    fleet.register(name, str(link), host)
    fleet.wait_presence(name, "online")
    killed: set[int] = set()
    deadline = time.monotonic() + 120
    while fleet.presence(name) != "failed" and time.monotonic() < deadline:
        pid = _worker_pid(fleet, host)
        if pid is not None and pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.2)
    assert fleet.presence(name) == "failed"
    assert len(killed) == 5
    assert "killed by SIGKILL" in fleet.error(name)
    # Every crash is counted where the metrics' restart counter reads it.
    assert fleet.redis.get(fleet.presence_store.restarts_key(name)) == b"5"
    assert stack.processes[f"host-{host}"].poll() is None


def _worker_pid(fleet: HostFleet, host: str) -> int | None:
    return next(iter(fleet.worker_pids(host)), None)

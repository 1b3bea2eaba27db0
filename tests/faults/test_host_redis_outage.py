"""Redis going away under a host agent: its workers stay as they are (no restarts, nothing
counted as a crash), and once Redis is back the device is online and serves commands."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.host_fleet import HostFleet
from bench.local_stack import Stack, running_stack
from hwq.embedded_redis import EmbeddedRedis

# Longer than the agent's reconcile period and a worker's presence refresh.
OUTAGE_S = 12


@pytest.fixture
def outage_stack(tmp_path: Path) -> Iterator[tuple[Stack, EmbeddedRedis]]:
    # Append-only, so a stop and a start keep the data, as a restart in production does.
    server = EmbeddedRedis(tmp_path / "redis", persist=True)
    server.start()
    try:
        with running_stack(tmp_path / "home", server.url) as stack:
            yield stack, server
    finally:
        server.stop()


def test_workers_outlive_a_redis_outage(outage_stack: tuple[Stack, EmbeddedRedis]) -> None:
    stack, server = outage_stack
    fleet = HostFleet(stack)
    host, name = f"h{uuid.uuid4().hex[:6]}", f"r{uuid.uuid4().hex[:7]}"
    link = fleet.plug_adapter(name, name)
    fleet.start_agent(host)
    fleet.register(name, str(link), host)
    fleet.wait_presence(name, "online")
    workers = fleet.worker_pids(host)

    server.stop()
    time.sleep(OUTAGE_S)
    assert fleet.worker_pids(host) == workers
    server.start()

    fleet.wait_presence(name, "online")
    assert fleet.worker_pids(host) == workers
    assert stack.processes[f"host-{host}"].poll() is None
    assert stack.wait(stack.submit(name, "ECHO back"))["response"] == {"text": "back"}
    for process_name in [n for n in stack.processes if n.startswith(("host-", "sim-"))]:
        stack.stop(process_name)
    fleet.close()

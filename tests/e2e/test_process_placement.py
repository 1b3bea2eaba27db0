"""With HWQ_PIN_CPU=true each hwq process keeps all its threads on one CPU: the API and server
worker on the last, device workers on the CPUs in turn. By default the kernel places them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.host_fleet import HostFleet
from bench.local_stack import Stack, running_stack
from worker_host.cpu_placement import allowed_cpus

CPUS = allowed_cpus()
pytestmark = pytest.mark.skipif(len(CPUS) < 2, reason="one CPU: nothing to choose between")


@pytest.fixture(scope="module")
def placed_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own that pins, so its device workers take the first turns of the count."""
    with running_stack(
        tmp_path_factory.mktemp("hwq-cpus"), redis_url, HWQ_PIN_CPU="true"
    ) as stack:
        yield stack


def _process_and_children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    children = [
        int(child)
        for tid in os.listdir(tasks)
        for child in (tasks / tid / "children").read_text().split()
    ]
    return [pid, *(p for child in children for p in _process_and_children(child))]


def _is_analysis_child(pid: int) -> bool:
    # Analyses run in children of the server worker that may use every CPU on purpose.
    return b"tasks.analysis_sandbox" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _cpus_of_every_thread(stack: Stack, name: str) -> set[str]:
    """Cpus_allowed_list of each thread of the named child and of its own children (but the
    analysis children, which may use any CPU)."""
    return _cpus_of_threads(_process_and_children(stack.processes[name].pid))


def _cpus_of_threads(pids: list[int]) -> set[str]:
    found = set()
    for pid in pids:
        if _is_analysis_child(pid):
            continue
        for tid in os.listdir(f"/proc/{pid}/task"):
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            found.update(
                line.split()[1]
                for line in status.splitlines()
                if line.startswith("Cpus_allowed_list")
            )
    return found


def test_central_processes_share_the_last_cpu(placed_stack: Stack) -> None:
    last = str(CPUS[-1])
    assert _cpus_of_every_thread(placed_stack, "api") == {last}
    assert _cpus_of_every_thread(placed_stack, "server-worker") == {last}


def test_device_workers_take_the_cpus_in_turn_and_still_answer(placed_stack: Stack) -> None:
    placed_stack.add_sim_device("cpu-a")
    placed_stack.add_sim_device("cpu-b")
    first = _cpus_of_every_thread(placed_stack, "device-cpu-a")
    second = _cpus_of_every_thread(placed_stack, "device-cpu-b")
    assert (first, second) == ({str(CPUS[0])}, {str(CPUS[1])})
    command = placed_stack.wait(placed_stack.submit("cpu-b", "ECHO pinned"))
    assert command["response"] == {"text": "pinned"}


def test_workers_a_host_agent_forks_take_the_cpus_in_turn(placed_stack: Stack) -> None:
    fleet = HostFleet(placed_stack)
    host = f"pin{uuid.uuid4().hex[:6]}"
    names = [f"p{uuid.uuid4().hex[:7]}" for _ in range(2)]
    try:
        for name in names:
            link = fleet.plug_adapter(name, name)
            fleet.register(name, str(link), host)
        fleet.start_agent(host)
        for name in names:
            fleet.wait_presence(name, "online")
        placed = [_cpus_of_threads([pid]) for pid in fleet.worker_pids(host)]
        # Each worker on one CPU of its own: the host's first two turns.
        assert sorted(placed, key=str) == [{str(CPUS[0])}, {str(CPUS[1])}]
        command = placed_stack.wait(placed_stack.submit(names[1], "ECHO forked and pinned"))
        assert command["response"] == {"text": "forked and pinned"}
    finally:
        for process in [n for n in placed_stack.processes if n.startswith(("host-", "sim-"))]:
            placed_stack.stop(process)
        fleet.close()


@pytest.mark.parametrize("setting", ["false", None], ids=["switched-off", "unset"])
def test_the_kernel_places_processes_unless_pinning_is_asked_for(
    placed_stack: Stack, setting: str | None
) -> None:
    # Unset means off: under a CPU quota, or beside other hwq installs, pinning would crowd
    # every central process onto one core.
    name = f"cpu-{setting or 'unset'}"
    del placed_stack.extra_env["HWQ_PIN_CPU"]
    if setting is not None:
        placed_stack.extra_env["HWQ_PIN_CPU"] = setting
    try:
        placed_stack.add_sim_device(name)
    finally:
        placed_stack.extra_env["HWQ_PIN_CPU"] = "true"
    listed = _cpus_of_every_thread(placed_stack, f"device-{name}")
    assert [_expand(cpus) for cpus in listed] == [set(CPUS)]


def _expand(cpu_list: str) -> set[int]:
    """'0-2,5' → {0, 1, 2, 5}"""
    cpus: set[int] = set()
    for part in cpu_list.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus

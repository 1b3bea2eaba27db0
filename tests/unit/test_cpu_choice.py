"""Where hwq's processes run: the choice of CPU, and pinning a real process with its threads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from worker_host.cpu_placement import allowed_cpus, central_cpu, device_cpu

# Run in a child process: pinning pytest itself would squeeze every later test onto one CPU.
PIN_A_THREADED_PROCESS = """
import json, os, sys, threading
from worker_host.cpu_placement import pin_to
started = threading.Event(); stop = threading.Event()
def idle():
    started.set(); stop.wait()
before = threading.Thread(target=idle); before.start(); started.wait()
pin_to(int(sys.argv[1]))
after = threading.Thread(target=stop.wait); after.start()
cpus = {}
for tid in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{tid}/status") as status:
        for line in status:
            if line.startswith("Cpus_allowed_list"):
                cpus[tid] = line.split()[1]
stop.set(); before.join(); after.join()
print(json.dumps(cpus))
"""


def test_the_central_processes_take_the_last_cpu() -> None:
    assert central_cpu([0, 1]) == 1
    assert central_cpu([2, 5, 7]) == 7


def test_device_workers_take_the_cpus_in_turn() -> None:
    assert [device_cpu([0, 1], turn) for turn in range(5)] == [0, 1, 0, 1, 0]
    assert [device_cpu([3, 4, 6], turn) for turn in range(4)] == [3, 4, 6, 3]


def test_a_pinned_process_keeps_every_thread_on_that_cpu() -> None:
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip("one CPU: nothing to choose between")
    target = cpus[-1]
    result = subprocess.run(
        [sys.executable, "-c", PIN_A_THREADED_PROCESS, str(target)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    per_thread = json.loads(result.stdout)
    # The main thread, one started before pinning and one after.
    assert len(per_thread) == 3
    assert set(per_thread.values()) == {str(target)}

"""Footprint: a device worker's memory against a bare Celery worker, idle CPU, Redis per command.

Memory is VmRSS from /proc; CPU is utime + stime from /proc/<pid>/stat over a window, as a
percentage of one core; Redis is `used_memory` before and after queuing commands that no
worker takes.
"""

from __future__ import annotations

import time
from typing import Any

from bench import common
from bench.local_stack import Stack
from bench.procfs import (
    CLOCK_TICKS_PER_S,
    MIB,
    cpu_ticks,
    process_tree,
    redis_used_bytes,
    resident_bytes,
)

# Idle device workers watched, and for how long (QUICK_* for a smoke test).
DEFAULT_IDLE_WORKERS = 50
QUICK_IDLE_WORKERS = 10
DEFAULT_IDLE_WINDOW_S = 60.0
QUICK_IDLE_WINDOW_S = 10.0
# Commands queued to measure Redis memory per command.
DEFAULT_QUEUED = 1000
QUICK_QUEUED = 200
# Pause after the last command before reading memory: lets buffers and recording settle.
SETTLE_AFTER_COMMAND_S = 2.0
# Pause after every worker is online before the CPU window: start-up work is done by then.
SETTLE_AFTER_ONLINE_S = 5.0
# High enough that queuing commands with no worker never meets the queue cap.
QUEUE_CAP = "1000000"
# Targets: device worker RSS over bare Celery RSS, and idle CPU of the watched workers.
RSS_RATIO_TARGET = 1.15
IDLE_CPU_TARGET_PCT = 5.0


def device_worker_rss(stack: Stack, device: str) -> int:
    """RSS of a device's worker after one command and a settle."""
    stack.wait(stack.submit(device, "*IDN?"))
    time.sleep(SETTLE_AFTER_COMMAND_S)
    return resident_bytes(stack.processes[f"device-{device}"].pid)


def bare_celery_rss(redis_url: str) -> int:
    """RSS of a bare Celery solo worker after one task and a settle."""
    with common.bare_celery_workers(redis_url, 1) as bare:
        assert bare.echo("x").get(timeout=10) == "x"
        time.sleep(SETTLE_AFTER_COMMAND_S)
        return resident_bytes(bare.pids[0])


def stop_workers(stack: Stack, names: list[str]) -> None:
    """Stop the workers of `names` together rather than one shutdown after another."""
    running = [f"device-{name}" for name in names if f"device-{name}" in stack.processes]
    for key in running:
        stack.processes[key].terminate()
    for key in running:
        stack.stop(key)  # waits, and kills a worker that does not stop


def idle_cpu_pct(groups: dict[str, list[int]], window: float) -> dict[str, float]:
    """CPU of each group of processes over `window` seconds, as % of one core."""
    before = {name: cpu_ticks(pids) for name, pids in groups.items()}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    after = {name: cpu_ticks(pids) for name, pids in groups.items()}
    return {
        name: round((after[name] - before[name]) / CLOCK_TICKS_PER_S / elapsed * 100, 2)
        for name in groups
    }


def redis_bytes_per_command(stack: Stack, redis_url: str, device: str, count: int) -> float:
    """Growth of Redis `used_memory` per command queued to a device with no worker."""
    before = redis_used_bytes(redis_url)
    for i in range(count):
        stack.submit(device, f"ECHO {i}")
        common.progress("queued", i + 1, count)
    time.sleep(SETTLE_AFTER_COMMAND_S)
    after = redis_used_bytes(redis_url)
    return round((after - before) / count, 1)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure memory, idle CPU and Redis per command, and return the figures and checks."""
    workers = QUICK_IDLE_WORKERS if quick else DEFAULT_IDLE_WORKERS
    window = QUICK_IDLE_WINDOW_S if quick else DEFAULT_IDLE_WINDOW_S
    queued = QUICK_QUEUED if quick else DEFAULT_QUEUED
    idle_names = [f"idle{i}" for i in range(workers)]
    with common.bench_redis() as redis_url:
        with common.hwq_stack(redis_url, HWQ_QUEUE_CAP=QUEUE_CAP) as stack:
            stack.add_sim_device("fp0")
            device_rss = device_worker_rss(stack, "fp0")
            stack.stop("device-fp0")
            try:
                common.add_simulators(stack, idle_names)
                common.start_device_workers(stack, idle_names)
                time.sleep(SETTLE_AFTER_ONLINE_S)
                cpu = idle_cpu_pct(
                    {
                        "device_workers": [stack.processes[f"device-{n}"].pid for n in idle_names],
                        "api": process_tree(stack.processes["api"].pid),
                        "server_worker": process_tree(stack.processes["server-worker"].pid),
                    },
                    window,
                )
            finally:
                stop_workers(stack, idle_names)
            per_command = redis_bytes_per_command(stack, redis_url, "fp0", queued)
        bare_rss = bare_celery_rss(redis_url)
    ratio = round(device_rss / bare_rss, 2)
    idle_name = f"{workers} idle device workers, % of one core"
    return {
        "device_worker_rss_mib": round(device_rss / MIB, 1),
        "bare_celery_rss_mib": round(bare_rss / MIB, 1),
        "rss_ratio": ratio,
        "idle_workers": workers,
        "idle_window_s": window,
        "idle_cpu_pct": cpu,
        "queued_commands": queued,
        "redis_bytes_per_queued_command": per_command,
        "checks": [
            common.check(
                "device worker RSS / bare celery solo worker RSS", ratio, "<=", RSS_RATIO_TARGET
            ),
            common.check(idle_name, cpu["device_workers"], "<=", IDLE_CPU_TARGET_PCT),
        ],
    }


def report(results: dict[str, Any]) -> None:
    """Print the footprint table."""
    cpu = results["idle_cpu_pct"]
    workers = results["idle_workers"]
    rows = [
        ("", "measured"),
        ("device worker RSS, MiB", str(results["device_worker_rss_mib"])),
        ("bare celery solo worker RSS, MiB", str(results["bare_celery_rss_mib"])),
        ("RSS ratio", str(results["rss_ratio"])),
        (f"{workers} idle device workers, % of one core", str(cpu["device_workers"])),
        ("  per worker", str(round(cpu["device_workers"] / workers, 3))),
        ("API idle, % of one core", str(cpu["api"])),
        ("server worker idle, % of one core", str(cpu["server_worker"])),
        ("Redis bytes per queued command", str(results["redis_bytes_per_queued_command"])),
    ]
    common.print_table(f"Footprint (idle CPU over {results['idle_window_s']} s)", rows)


def main() -> None:
    """Run from the command line: python -m bench.footprint [--quick]."""
    common.script_main("footprint", __doc__, run, report)


if __name__ == "__main__":
    main()

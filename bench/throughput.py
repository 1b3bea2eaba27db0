"""Throughput: line commands spread over 1, 4 and 16 devices, submitted as fast as the API takes.

Each device count gets a fresh stack on an emptied Redis; hwq's commands per second run from the
first submit until the last command is done, and every reply is checked. Beside it, in the same
run and on the same Redis: bare Celery solo workers, as many as devices, draining as many echo
tasks (`delay` them all, then one `ResultSet.get()`). Both stay up while they take turns,
REPEATS times each, and the figures are the medians: a drift in the machine's speed weighs on
both alike.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import redis

from bench import common
from bench.local_stack import Stack
from bench.procfs import CLOCK_TICKS_PER_S, cpu_ticks, process_tree, redis_server_pid

# Commands per device count in a full run, and in a smoke test.
DEFAULT_COMMANDS = 2000
QUICK_COMMANDS = 200
# The device counts the commands are spread over; the target is set on the last one.
DEVICE_COUNTS = (1, 4, 16)
# HTTP clients submitting at once, as a few busy scripts or a dashboard would.
CLIENT_THREADS = 8
# Per-device queue cap, raised so a whole run fits on a single device.
QUEUE_CAP = "100000"
# Longest a run may take to drain once submitted, before the benchmark gives up.
DRAIN_TIMEOUT_S = 600.0
# Echo tasks per bare worker sent before timing, as hwq's devices each answer one *IDN? first.
BARE_WARMUP_PER_WORKER = 2
# Rows per page when reading the commands back (the API's maximum).
PAGE_LIMIT = 500
# Turns each of hwq and bare Celery takes at every device count; a smoke test takes one.
REPEATS = 3


class CpuMeter:
    """CPU used by named groups of processes from now on, per command: where the time goes."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.before = {name: cpu_ticks(pids) for name, pids in groups.items()}

    def per_command_ms(self, commands: int) -> dict[str, float]:
        """Milliseconds of CPU per command for each group, and their total."""
        used = {
            name: (cpu_ticks(pids) - self.before[name]) / CLOCK_TICKS_PER_S * 1000 / commands
            for name, pids in self.groups.items()
        }
        used["total"] = sum(used.values())
        return {name: round(ms, 2) for name, ms in used.items()}


def hwq_processes(stack: Stack, redis_url: str) -> dict[str, list[int]]:
    """hwq's processes by role, with the Redis server and this process (the clients)."""

    def role(prefix: str) -> list[int]:
        return [
            pid
            for name, process in stack.processes.items()
            if name.startswith(prefix)
            for pid in process_tree(process.pid)
        ]

    return {
        "api": role("api"),
        "server worker": role("server-worker"),
        "device workers": role("device-"),
        "simulators": role("sim-"),
        "redis": [redis_server_pid(redis_url)],
        "clients": [os.getpid()],
    }


class SharedProgress:
    """A progress line that several threads advance."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.lock = threading.Lock()

    def advance(self) -> None:
        """Count one more and print the line."""
        with self.lock:
            self.done += 1
            common.progress(self.label, self.done, self.total)


def empty_redis(redis_url: str) -> None:
    """Drop every key, so a new stack sees no streams or device keys of the one before."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()


def submit_and_drain(
    stack: Stack, devices: Sequence[str], indexes: range, counter: SharedProgress
) -> dict[str, str]:
    """Submit `ECHO i` to device i mod n for each index; wait for this client's last ones."""
    expected: dict[str, str] = {}
    last_on_device: dict[str, str] = {}
    for i in indexes:
        device = devices[i % len(devices)]
        command_id = stack.submit(device, f"ECHO {i}")
        expected[command_id] = str(i)
        last_on_device[device] = command_id
        counter.advance()
    # A device runs its queue in order, and each client submits in order, so the last command
    # queued on a device is some client's last on it: once all of those are done, all are.
    for command_id in last_on_device.values():
        stack.wait(command_id, DRAIN_TIMEOUT_S)
    return expected


def verify_replies(stack: Stack, devices: Sequence[str], expected: dict[str, str]) -> None:
    """Read every device's commands back; fail unless each one is done with its own echo."""
    seen: dict[str, dict[str, Any]] = {}
    for device in devices:
        query: dict[str, str | int] = {"device": device, "limit": PAGE_LIMIT}
        while True:
            reply = stack.request("GET", f"/commands?{urlencode(query)}")
            if reply.status != 200:
                raise RuntimeError(f"listing {device}'s commands failed: {reply.body}")
            seen.update((item["id"], item) for item in reply.body["items"])
            if not reply.body["next_cursor"]:
                break
            query["cursor"] = reply.body["next_cursor"]
    wrong = [
        seen.get(command_id, {"id": command_id, "state": "missing"})
        for command_id, text in expected.items()
        if command_id not in seen
        or seen[command_id]["state"] != "done"
        or seen[command_id]["response"] != {"text": text}
    ]
    if wrong:
        raise RuntimeError(f"{len(wrong)} of {len(expected)} commands went wrong, e.g. {wrong[:3]}")


def hwq_throughput(
    stack: Stack, devices: Sequence[str], total: int
) -> tuple[float, dict[str, str]]:
    """Commands per second: `total` echoes from CLIENT_THREADS clients until the last is done.

    Also returns each command's id with the reply it must have, for `verify_replies`.
    """
    counter = SharedProgress(f"hwq {len(devices)} devices", total)
    shares = [range(client, total, CLIENT_THREADS) for client in range(CLIENT_THREADS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        expectations = list(
            pool.map(lambda share: submit_and_drain(stack, devices, share, counter), shares)
        )
    elapsed = time.perf_counter() - started
    return total / elapsed, {k: v for part in expectations for k, v in part.items()}


def bare_throughput(bare: common.BareCelery, total: int, label: str) -> float:
    """Echo tasks per second: `delay` them all, until the last result was stored.

    The end is the latest `date_done` the workers stamped on a result, not the moment the
    client has collected them all: Celery's result collection can lag the last result by up
    to half a second, which would flatter hwq by as much.
    """
    from celery.result import ResultSet

    started = datetime.now(UTC)
    results = []
    for i in range(total):
        results.append(bare.echo(str(i)))
        common.progress(label, i + 1, total)
    replies = ResultSet(results).get(timeout=DRAIN_TIMEOUT_S)
    if replies != [str(i) for i in range(total)]:
        wrong = sum(1 for i, reply in enumerate(replies) if reply != str(i))
        raise RuntimeError(f"{wrong} of {total} bare Celery echoes came back wrong")
    stamps = [result.date_done for result in results]
    if any(stamp is None for stamp in stamps):
        raise RuntimeError("a bare Celery result carries no date_done")
    finished = max(stamp for stamp in stamps if stamp is not None)
    return total / (finished - started).total_seconds()


def median_shares(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per process group, the median of its CPU per command over the runs."""
    return {name: round(statistics.median(run[name] for run in runs), 2) for name in runs[0]}


def run(quick: bool = False, commands: int | None = None) -> dict[str, Any]:
    """Measure hwq and bare Celery at each device count and return the figures and ratios."""
    total = commands or (QUICK_COMMANDS if quick else DEFAULT_COMMANDS)
    repeats = 1 if quick else REPEATS
    rows: list[dict[str, Any]] = []
    with common.bench_redis() as redis_url:
        for count in DEVICE_COUNTS:
            empty_redis(redis_url)
            devices = [f"tp{count}-{i}" for i in range(count)]
            hwq_rates: list[float] = []
            bare_rates: list[float] = []
            hwq_cpu: list[dict[str, float]] = []
            bare_cpu: list[dict[str, float]] = []
            with (
                common.hwq_stack(redis_url, HWQ_QUEUE_CAP=QUEUE_CAP) as stack,
                common.bare_celery_workers(redis_url, count) as workers,
            ):
                common.add_simulators(stack, devices)
                common.start_device_workers(stack, devices)
                for device in devices:
                    stack.wait(stack.submit(device, "*IDN?"))  # warm the ports and connections
                bare_throughput(workers, count * BARE_WARMUP_PER_WORKER, "bare celery warm-up")
                bare_groups = {
                    "workers": workers.pids,
                    "redis": [redis_server_pid(redis_url)],
                    "clients": [os.getpid()],
                }
                for _ in range(repeats):
                    meter = CpuMeter(hwq_processes(stack, redis_url))
                    rate, expected = hwq_throughput(stack, devices, total)
                    hwq_rates.append(rate)
                    # The CPU of the ledger's catching up belongs to these commands too;
                    # that of reading them all back to check them does not.
                    common.settle(stack)
                    hwq_cpu.append(meter.per_command_ms(total))
                    verify_replies(stack, devices, expected)
                    meter = CpuMeter(bare_groups)
                    bare_rates.append(
                        bare_throughput(workers, total, f"bare celery {count} workers")
                    )
                    bare_cpu.append(meter.per_command_ms(total))
            ratios = [hwq / bare for hwq, bare in zip(hwq_rates, bare_rates, strict=True)]
            rows.append(
                {
                    "devices": count,
                    "hwq_per_s": round(statistics.median(hwq_rates), 1),
                    "bare_per_s": round(statistics.median(bare_rates), 1),
                    "ratio": round(statistics.median(ratios), 2),
                    "ratios": [round(ratio, 2) for ratio in ratios],
                    "hwq_cpu_ms_per_command": median_shares(hwq_cpu),
                    "bare_cpu_ms_per_command": median_shares(bare_cpu),
                }
            )
    most, ratio = DEVICE_COUNTS[-1], rows[-1]["ratio"]
    return {
        "commands": total,
        "clients": CLIENT_THREADS,
        "repeats": repeats,
        "runs": rows,
        "checks": [
            common.check(
                f"throughput {most} devices / bare celery {most} solo workers", ratio, ">=", 0.8
            ),
        ],
    }


def report(results: dict[str, Any]) -> None:
    """Print the throughput table."""
    rows = [("devices", "hwq cmds/s", "bare cmds/s", "hwq / bare", "each turn")]
    for row in results["runs"]:
        turns = " ".join(str(ratio) for ratio in row.get("ratios", []))
        rows.append(
            (
                str(row["devices"]),
                str(row["hwq_per_s"]),
                str(row["bare_per_s"]),
                str(row["ratio"]),
                turns,
            )
        )
    repeats = results.get("repeats", 1)
    common.print_table(
        f"Throughput: {results['commands']} commands from {results['clients']} clients, "
        f"median of {repeats} turns each",
        rows,
    )
    cpu_rows = [("devices", "who", "CPU ms per command, by process")]
    for row in results["runs"]:
        for who in ("hwq", "bare"):
            shares = row.get(f"{who}_cpu_ms_per_command", {})
            cpu_rows.append(
                (str(row["devices"]), who, ", ".join(f"{k} {v}" for k, v in shares.items()))
            )
    common.print_table(
        f"Where the CPU goes ({results['commands']} commands, both cores shared)", cpu_rows
    )


def main() -> None:
    """Run from the command line: python -m bench.throughput [--quick] [--commands N]."""
    common.script_main(
        "throughput", __doc__, run, report, [("--commands", {"type": int, "default": None})]
    )


if __name__ == "__main__":
    main()

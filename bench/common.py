"""What every benchmark shares: its own Redis, a local hwq stack, timing and reporting."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult

from bench.bare_celery import ECHO_TASK, make_app
from bench.local_stack import Stack, running_stack
from hwq.embedded_redis import EmbeddedRedis
from tasks.live_store import LiveStore
from worker_host.task_events import EVENT_BATCH_S

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Time each device worker gets to come online when many start at once on two busy cores.
ONLINE_TIMEOUT_PER_WORKER_S = 15.0
# The benchmarks keep each hwq process on one CPU, the placement their figures were measured
# with (bench/README.md); `HWQ_PIN_CPU=false make bench` measures the kernel's placement.
PLACEMENT = {"HWQ_PIN_CPU": os.environ.get("HWQ_PIN_CPU") or "true"}
# The --quick option every benchmark script takes.
QUICK_HELP = "Smaller runs, for a smoke test."


def percentile(samples: list[float], fraction: float) -> float:
    """The value below which `fraction` of the samples lie (nearest rank)."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def summary_ms(samples: list[float]) -> dict[str, float]:
    """p50, p99 and mean of durations in seconds, as milliseconds."""
    return {
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
        "n": len(samples),
    }


def progress(label: str, done: int, total: int) -> None:
    """Progress on stderr: rewritten in place on a terminal, every tenth part in a log."""
    if sys.stderr.isatty():
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)
    elif done == total or done % max(1, total // 10) == 0:
        print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)


@contextmanager
def bench_redis() -> Iterator[str]:
    """A Redis server of the benchmark's own, like the one `hwq up` embeds."""
    with tempfile.TemporaryDirectory(prefix="hwq-bench-redis-") as folder:
        server = EmbeddedRedis(Path(folder), persist=False)
        url = server.start()
        try:
            yield url
        finally:
            server.stop()


@contextmanager
def hwq_stack(redis_url: str, **extra_env: str) -> Iterator[Stack]:
    """API, server worker and SQLite in a temporary home; devices are added by the caller."""
    with (
        tempfile.TemporaryDirectory(prefix="hwq-bench-") as folder,
        running_stack(
            Path(folder),
            redis_url,
            "bench",
            **{"HWQ_LOG_LEVEL": "WARNING", **PLACEMENT, **extra_env},
        ) as stack,
    ):
        yield stack


@dataclass
class BareCelery:
    """Running bare Celery workers: a client app on their Redis and the workers' pids."""

    app: Celery
    pids: list[int]

    def echo(self, text: str) -> AsyncResult[Any]:
        """Send one echo task."""
        return self.app.send_task(ECHO_TASK, args=[text])


@contextmanager
def bare_celery_workers(redis_url: str, count: int = 1) -> Iterator[BareCelery]:
    """`count` bare Celery solo workers on the same Redis; yields the workers' pids."""
    env = {**os.environ, "BENCH_BROKER_URL": redis_url}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.bare_celery",
                "worker",
                "--pool",
                "solo",
                "--hostname",
                f"bare{i}@bench",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for i in range(count)
    ]
    try:
        # A client app of this Redis's own: a shared one would keep pools to an earlier Redis.
        app = make_app(redis_url)
        deadline = time.monotonic() + 30 + 5 * count
        while len(app.control.ping(timeout=0.5) or []) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("bare Celery workers did not answer")
        yield BareCelery(app, [w.pid for w in workers])
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)


def settle(stack: Stack, timeout_s: float = 120.0) -> None:
    """Wait until hwq has done the work it defers: the ledger caught up, task events sent.

    Run before bare Celery takes its turn, so hwq's deferred work lands in hwq's own figures
    and not in the other side's.
    """
    settle_on(stack.redis_url, stack.key_prefix, timeout_s)


def settle_on(redis_url: str, key_prefix: str, timeout_s: float = 120.0) -> None:
    """`settle` for the hwq whose Redis and key prefix these are (`hwq up`'s, say)."""
    with redis.Redis.from_url(redis_url) as client:
        transitions = LiveStore(client, key_prefix).transitions_key
        deadline = time.monotonic() + timeout_s
        while client.xlen(transitions):
            if time.monotonic() > deadline:
                raise RuntimeError("the recorder did not catch up with the transitions")
            time.sleep(0.01)
    time.sleep(EVENT_BATCH_S + 0.05)


def add_simulators(stack: Stack, names: Sequence[str]) -> None:
    """Start a simulator for each name and register it as a device, without its worker."""
    for i, name in enumerate(names, start=1):
        stack.add_sim_device(name, worker=False)
        progress("simulators", i, len(names))


def start_device_workers(stack: Stack, names: Sequence[str]) -> float:
    """Spawn every device's worker at once; the seconds until GET /devices shows all online."""
    wanted = set(names)
    online = 0

    def all_online() -> bool:
        nonlocal online
        items = stack.request("GET", "/devices").body["items"]
        now = sum(1 for item in items if item["name"] in wanted and item["online"])
        for count in range(online + 1, now + 1):
            progress("device workers online", count, len(wanted))
        online = max(online, now)
        return now == len(wanted)

    started = time.perf_counter()
    for name in names:
        stack.spawn(f"device-{name}", "device-worker", name, with_database=False)
    stack.wait_for(
        all_online,
        f"{len(wanted)} device workers",
        timeout=ONLINE_TIMEOUT_PER_WORKER_S * len(wanted) + 30,
    )
    return time.perf_counter() - started


def check(name: str, value: float, relation: str, target: float) -> dict[str, Any]:
    """One target of the benchmarks: the measured value, the target and whether it is met."""
    met = value <= target if relation == "<=" else value >= target
    return {"name": name, "value": value, "relation": relation, "target": target, "met": met}


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Merge one benchmark's results into bench/results/<date>.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{datetime.now(UTC):%Y-%m-%d}.json"
    document = json.loads(path.read_text()) if path.exists() else {}
    document["machine"] = machine()
    document[name] = {**results, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def script_main(
    name: str,
    doc: str | None,
    run: Callable[..., dict[str, Any]],
    report: Callable[[dict[str, Any]], None],
    extra_args: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """One benchmark from the command line: run it, print its table, merge its results.

    Every script takes --quick; `extra_args` are its own options as (flag, add_argument
    keywords), each passed to `run` under the option's name.
    """
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    for flag, settings in extra_args:
        parser.add_argument(flag, **settings)
    results = run(**vars(parser.parse_args()))
    report(results)
    print(f"results in {write_results(name, results)}")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0]}


def print_table(title: str, rows: Sequence[tuple[str, ...]]) -> None:
    """A plain aligned table."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))

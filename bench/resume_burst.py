"""What paused device workers do when they are resumed: Redis commands and CPU, per window.

`bench.host_scale` measures one device's latency with the other workers paused (SIGSTOP)
and running (SIGCONT). Resumed workers first catch up on what fell due while they were
stopped. This counts, for the windows just after a resume and for one at rest long after,
the Redis commands the whole machine sent (by name, per second) and the CPU the resumed
workers used (% of one core), so the catch-up is named rather than guessed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import redis

from bench.procfs import CLOCK_TICKS_PER_S, cpu_ticks

# How long the workers stay paused before the resume (about one alone turn of the latency run).
PAUSE_S = 2.0
# Windows after the resume, as (start, end) seconds; the last one is long after, at rest.
WINDOWS_S = ((0.0, 0.5), (0.5, 2.0), (2.0, 5.0), (20.0, 25.0))
# Commands listed per window: the busiest ones.
TOP_COMMANDS = 6


def send(pids: Sequence[int], sig: signal.Signals) -> None:
    """Send `sig` to every pid still there."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls so far of each Redis command (INFO commandstats)."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def measure(redis_url: str, pids: Sequence[int]) -> list[dict[str, Any]]:
    """Pause `pids`, resume them, and describe each window of WINDOWS_S after the resume."""
    client = redis.Redis.from_url(redis_url)
    try:
        send(pids, signal.SIGSTOP)
        time.sleep(PAUSE_S)
        send(pids, signal.SIGCONT)
        resumed = time.monotonic()
        windows = []
        for start, end in WINDOWS_S:
            time.sleep(max(0.0, resumed + start - time.monotonic()))
            calls, ticks, began = command_calls(client), cpu_ticks(pids), time.monotonic()
            time.sleep(max(0.0, resumed + end - time.monotonic()))
            span = time.monotonic() - began
            after = command_calls(client)
            rates = {
                name: round((after[name] - calls.get(name, 0)) / span, 1)
                for name in after
                if after[name] - calls.get(name, 0) > 0
            }
            busiest = dict(sorted(rates.items(), key=lambda item: -item[1])[:TOP_COMMANDS])
            windows.append({
                "window_s": [start, end],
                "redis_commands_per_s": busiest,
                "redis_total_per_s": round(sum(rates.values()), 1),
                "workers_cpu_pct": round(
                    (cpu_ticks(pids) - ticks) / CLOCK_TICKS_PER_S / span * 100, 1
                ),
            })  # fmt: skip
        return windows
    finally:
        send(pids, signal.SIGCONT)
        client.close()


def rows(windows: list[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    """Table rows: one per window."""
    out = []
    for window in windows:
        start, end = window["window_s"]
        busiest = ", ".join(f"{k} {v:g}" for k, v in window["redis_commands_per_s"].items())
        out.append((
            f"{count} workers, {start:g}–{end:g} s after resume",
            f"CPU {window['workers_cpu_pct']} % of a core; Redis {window['redis_total_per_s']:g}"
            f"/s ({busiest})",
        ))  # fmt: skip
    return out

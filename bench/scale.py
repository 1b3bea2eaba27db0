"""Scale: 50 device workers on one machine: how soon they are all online, and what they cost.

All 50 workers are spawned at once and timed until GET /devices shows every one online. Then
round-trip latency (submit, then ?wait) is measured on one device in turns: with the other 49
workers running, and with them paused (SIGSTOP), so the device is the only one at work. The
turns alternate, so a drift of the machine's speed during the run weighs on both alike. The
device workers' resident memory and Redis's used_memory are recorded at 50 devices, as
figures without targets.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from typing import Any

from bench import common
from bench.latency import BLOCK, DEFAULT_ROUNDS, WARMUP_PER_TURN, hwq_round_trips
from bench.local_stack import Stack
from bench.procfs import MIB, redis_used_bytes, resident_bytes

# Device workers on the machine in a full run, and in a smoke test.
DEFAULT_DEVICES = 50
QUICK_DEVICES = 10
# Round trips per measurement in a smoke test (a full run takes latency's DEFAULT_ROUNDS).
QUICK_ROUNDS = 50
# Round trips thrown away before each measurement, while ports and connections warm up.
WARMUP_ROUNDS = 10


# Pause after the other workers resume, so the timers that fell due while they were paused
# have fired before the turn with all of them running is measured.
RESUME_SETTLE_S = 0.5


def signal_workers(stack: Stack, names: Sequence[str], sig: signal.Signals) -> None:
    """Send `sig` to the device workers of `names`."""
    for name in names:
        stack.processes[f"device-{name}"].send_signal(sig)


def device_workers_resident_bytes(stack: Stack) -> int:
    """Summed resident memory of every device worker the stack runs."""
    return sum(
        resident_bytes(process.pid)
        for name, process in stack.processes.items()
        if name.startswith("device-")
    )


def run(
    quick: bool = False, devices: int | None = None, rounds: int | None = None
) -> dict[str, Any]:
    """Time N workers coming online, compare latency with N devices to 1, and record memory."""
    count = devices or (QUICK_DEVICES if quick else DEFAULT_DEVICES)
    rounds = rounds or (QUICK_ROUNDS if quick else DEFAULT_ROUNDS)
    names = [f"scale{i}" for i in range(count)]
    probe = names[0]
    others = names[1:]
    samples: dict[str, list[float]] = {"crowded": [], "alone": []}
    with common.bench_redis() as redis_url, common.hwq_stack(redis_url) as stack:
        common.add_simulators(stack, names)
        online_s = common.start_device_workers(stack, names)
        hwq_round_trips(stack, probe, range(WARMUP_ROUNDS))
        try:
            for start in range(0, rounds, BLOCK):
                numbers = range(start, min(rounds, start + BLOCK))
                for turn in samples:
                    if turn == "crowded":
                        signal_workers(stack, others, signal.SIGCONT)
                        time.sleep(RESUME_SETTLE_S)
                    else:
                        signal_workers(stack, others, signal.SIGSTOP)
                    hwq_round_trips(stack, probe, range(WARMUP_PER_TURN))
                    samples[turn] += hwq_round_trips(stack, probe, numbers)
                common.progress("latency turns, all devices and one", numbers.stop, rounds)
        finally:
            # Paused workers could not stop when the stack stops them.
            signal_workers(stack, others, signal.SIGCONT)
        workers_mib = device_workers_resident_bytes(stack) / MIB
        redis_mib = redis_used_bytes(redis_url) / MIB
    alone, crowded = common.summary_ms(samples["alone"]), common.summary_ms(samples["crowded"])
    ratio = round(crowded["p50_ms"] / alone["p50_ms"], 2)
    return {
        "devices": count,
        "online_s": round(online_s, 1),
        "latency_1_device": alone,
        "latency_all_devices": crowded,
        "ratio_p50": ratio,
        "device_workers_rss_mib": round(workers_mib, 1),
        "rss_per_device_worker_mib": round(workers_mib / count, 1),
        "redis_used_memory_mib": round(redis_mib, 2),
        "checks": [common.check(f"latency p50 with {count} devices / with 1", ratio, "<=", 1.2)],
    }


def report(results: dict[str, Any]) -> None:
    """Print the scale table."""
    count = results["devices"]
    alone, crowded = results["latency_1_device"], results["latency_all_devices"]
    rows = [
        ("", "value"),
        (f"{count} workers spawned → all online", f"{results['online_s']} s"),
        ("latency p50 / p99 with 1 device", f"{alone['p50_ms']} / {alone['p99_ms']} ms"),
        (
            f"latency p50 / p99 with {count} devices",
            f"{crowded['p50_ms']} / {crowded['p99_ms']} ms",
        ),
        (f"p50 with {count} / with 1", str(results["ratio_p50"])),
        (
            f"resident memory of {count} device workers",
            f"{results['device_workers_rss_mib']} MiB "
            f"({results['rss_per_device_worker_mib']} MiB each)",
        ),
        (f"Redis used_memory at {count} devices", f"{results['redis_used_memory_mib']} MiB"),
    ]
    common.print_table(f"Scale: {count} devices on one machine", rows)


def main() -> None:
    """Run from the command line: python -m bench.scale [--quick] [--devices N] [--rounds N]."""
    common.script_main(
        "scale", __doc__, run, report,
        [("--devices", {"type": int, "default": None}),
         ("--rounds", {"type": int, "default": None})],
    )  # fmt: skip


if __name__ == "__main__":
    main()

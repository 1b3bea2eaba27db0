"""Latency: one line command submitted over HTTP and read back with ?wait, against bare parts.

Beside hwq, in the same run: a bare Celery echo round trip (`delay().get()`, one solo worker)
on the same Redis, and a bare pyserial write-and-readline to the same kind of simulator.
All three run side by side and take turns in blocks, so a drift in the machine's speed
during the run weighs on each of them alike instead of on whichever ran at the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import serial

from bench import common
from bench.local_stack import Stack
from worker_host.simulator import running_device

DEFAULT_ROUNDS = 500
# Round trips each of the three makes before the next one takes its turn: long enough that
# hwq's deferred work (a recorder batch every ~50 ms) mostly falls inside its own turn, short
# enough that a drift of the machine's speed reaches every side.
BLOCK = 100
# Round trips each side makes unmeasured at the start of its turn.
WARMUP_PER_TURN = 5


def hwq_round_trips(stack: Stack, device: str, numbers: range) -> list[float]:
    """Submit `ECHO i` then long-poll it, for each i in turn."""
    samples = []
    for i in numbers:
        started = time.perf_counter()
        command_id = stack.submit(device, f"ECHO {i}")
        reply = stack.request("GET", f"/commands/{command_id}?wait=10")
        samples.append(time.perf_counter() - started)
        assert reply.body["response"]["text"] == str(i), reply.body
    return samples


def celery_round_trips(bare: common.BareCelery, numbers: range) -> list[float]:
    """`delay().get()` on a bare echo task, for each i in turn."""
    samples = []
    for i in numbers:
        started = time.perf_counter()
        assert bare.echo(str(i)).get(timeout=10) == str(i)
        samples.append(time.perf_counter() - started)
    return samples


def serial_round_trips(port: serial.Serial, numbers: range) -> list[float]:
    """Write `ECHO i` to a simulated instrument on a pty and read its reply line."""
    samples = []
    for i in numbers:
        started = time.perf_counter()
        port.write(f"ECHO {i}\n".encode())
        assert port.readline().strip() == str(i).encode()
        samples.append(time.perf_counter() - started)
    return samples


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Measure all three in one run, taking turns, and return the figures and ratios."""
    rounds = rounds or (50 if quick else DEFAULT_ROUNDS)
    samples: dict[str, list[float]] = {"hwq": [], "bare_celery": [], "bare_serial": []}
    with common.bench_redis() as redis_url, common.hwq_stack(redis_url) as stack:
        stack.add_sim_device("lat0")
        stack.wait(stack.submit("lat0", "*IDN?"))  # warm the port and the connections
        with (
            common.bare_celery_workers(redis_url, 1) as bare,
            running_device("scpi", "bare") as device,
            serial.Serial(device.path, timeout=5) as port,
        ):
            celery_round_trips(bare, range(20))  # warm-up
            turns: dict[str, Callable[[range], list[float]]] = {
                "hwq": lambda numbers: hwq_round_trips(stack, "lat0", numbers),
                "bare_celery": lambda numbers: celery_round_trips(bare, numbers),
                "bare_serial": lambda numbers: serial_round_trips(port, numbers),
            }
            for start in range(0, rounds, BLOCK):
                numbers = range(start, min(rounds, start + BLOCK))
                for name, round_trips in turns.items():
                    # Each turn starts warm, whatever ran or paused before it.
                    round_trips(range(WARMUP_PER_TURN))
                    samples[name] += round_trips(numbers)
                    if name == "hwq":
                        common.settle(stack)
                common.progress("round trips of each", numbers.stop, rounds)
    hwq, bare_celery, bare_serial = (
        common.summary_ms(samples[name]) for name in ("hwq", "bare_celery", "bare_serial")
    )
    ratio_p50 = round(hwq["p50_ms"] / (bare_celery["p50_ms"] + bare_serial["p50_ms"]), 2)
    ratio_p99 = round(hwq["p99_ms"] / (bare_celery["p99_ms"] + bare_serial["p99_ms"]), 2)
    return {
        "hwq": hwq,
        "bare_celery": bare_celery,
        "bare_serial": bare_serial,
        "ratio_p50": ratio_p50,
        "ratio_p99": ratio_p99,
        "checks": [
            common.check("latency p50 / (bare celery + bare serial)", ratio_p50, "<=", 1.5),
            common.check("latency p99 / (bare celery + bare serial)", ratio_p99, "<=", 2.0),
        ],
    }


def report(results: dict[str, Any]) -> None:
    """Print the latency table."""
    rows = [("", "p50 ms", "p99 ms", "mean ms")]
    for name in ("hwq", "bare_celery", "bare_serial"):
        figures = results[name]
        rows.append((name, str(figures["p50_ms"]), str(figures["p99_ms"]), str(figures["mean_ms"])))
    rows.append(
        ("hwq / (celery + serial)", str(results["ratio_p50"]), str(results["ratio_p99"]), "")
    )
    common.print_table("Latency: submit → reply through ?wait", rows)


def main() -> None:
    """Run from the command line: python -m bench.latency [--quick] [--rounds N]."""
    common.script_main(
        "latency", __doc__, run, report, [("--rounds", {"type": int, "default": None})]
    )


if __name__ == "__main__":
    main()

"""Recorder lag: how far the SQL ledger trails Redis under sustained load, and how soon it drains.

Client threads keep every device busy for a fixed time, each submitting a command and
waiting for it (`GET /commands/{id}?wait=`), so the API, the device workers and
the server worker all compete for the CPUs for the whole run. A sampler reads the
transitions stream (what `/health` reports as `recorder_pending` and `recorder_lag_s`) four
times a second. After the load stops, the time until the stream is empty is the drain time.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from typing import Any

import redis

from bench import common
from tasks.live_store import LiveStore
from tasks.store_health import recorder_lag

# Devices kept busy, client threads submitting, and seconds of load in a full run and a smoke test.
DEVICES = 4
CLIENTS = 16
DEFAULT_SECONDS = 60.0
QUICK_SECONDS = 10.0
# How often the sampler reads the backlog.
SAMPLE_EVERY_S = 0.25
# Devices hold at most this many queued commands; the clients never come near it.
QUEUE_CAP = 100_000
# Longest the drain may take before the run gives up on it.
DRAIN_TIMEOUT_S = 300.0


def _load(stack: Any, names: list[str], stop: threading.Event, done: list[int]) -> None:
    """One client: submit-and-wait on the devices in turn until `stop`."""
    for name in itertools.cycle(names):
        if stop.is_set():
            return
        body = {"kind": "line", "payload": "ECHO load"}
        reply = stack.request("POST", f"/devices/{name}/commands", body=body)
        if reply.status == 202:
            stack.request("GET", f"/commands/{reply.body['id']}?wait=10")
            done.append(1)


def run(quick: bool = False, seconds: float | None = None) -> dict[str, Any]:
    """Keep the system busy for a while; sample the recorder's backlog; time its drain."""
    duration = seconds or (QUICK_SECONDS if quick else DEFAULT_SECONDS)
    names = [f"lag{i}" for i in range(DEVICES)]
    samples: list[tuple[int, float]] = []
    done: list[int] = []
    stop = threading.Event()
    with (
        common.bench_redis() as redis_url,
        common.hwq_stack(redis_url, HWQ_QUEUE_CAP=str(QUEUE_CAP)) as stack,
        redis.Redis.from_url(redis_url) as client,
    ):
        common.add_simulators(stack, names)
        common.start_device_workers(stack, names)
        transitions = LiveStore(client, stack.key_prefix).transitions_key
        clients = [
            threading.Thread(target=_load, args=(stack, names[i % DEVICES :] + names, stop, done))
            for i in range(CLIENTS)
        ]
        started = time.monotonic()
        for thread in clients:
            thread.start()
        while time.monotonic() - started < duration:
            lag = recorder_lag(client, transitions)
            samples.append((lag.pending, lag.oldest_s))
            if len(samples) % int(1 / SAMPLE_EVERY_S) == 0:
                common.progress("seconds of load", int(time.monotonic() - started), int(duration))
            time.sleep(SAMPLE_EVERY_S)
        stop.set()
        for thread in clients:
            thread.join()
        loaded_s = time.monotonic() - started
        left = client.xlen(transitions)
        drain_started = time.monotonic()
        common.settle(stack, DRAIN_TIMEOUT_S)
        drain_s = time.monotonic() - drain_started
    pending = [p for p, _ in samples]
    lags = [s for _, s in samples]
    return {
        "devices": DEVICES,
        "clients": CLIENTS,
        "seconds": round(loaded_s, 1),
        "commands": len(done),
        "commands_per_s": round(len(done) / loaded_s, 1),
        "pending_max": max(pending),
        "pending_median": statistics.median(pending),
        "lag_max_s": round(max(lags), 2),
        "lag_median_s": round(statistics.median(lags), 3),
        "pending_at_end": left,
        "drain_s": round(drain_s, 2),
        "checks": [
            common.check(
                "recorder lag under sustained load, max (s)", round(max(lags), 2), "<=", 5.0
            )
        ],  # fmt: skip
    }


def report(results: dict[str, Any]) -> None:
    """Print the recorder-lag table."""
    rows = [
        ("", "value"),
        (
            "load",
            f"{results['clients']} clients, {results['devices']} devices, {results['seconds']} s",
        ),  # fmt: skip
        ("commands done", f"{results['commands']} ({results['commands_per_s']} /s)"),
        (
            "transitions waiting: max / median",
            f"{results['pending_max']} / {results['pending_median']}",
        ),  # fmt: skip
        ("oldest waiting: max / median", f"{results['lag_max_s']} / {results['lag_median_s']} s"),
        ("waiting when the load stopped", str(results["pending_at_end"])),
        ("drained after the load in", f"{results['drain_s']} s"),
    ]
    common.print_table("Recorder lag under sustained load", rows)


def main() -> None:
    """Run from the command line: python -m bench.recorder_lag [--quick] [--seconds S]."""
    common.script_main(
        "recorder_lag", __doc__, run, report, [("--seconds", {"type": float, "default": None})]
    )


if __name__ == "__main__":
    main()

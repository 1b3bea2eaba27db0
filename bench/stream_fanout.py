"""Many observers on one busy device, through `hwq up` as a user runs it: command latency with
500 SSE observers (API) and 100 Socket.IO clients (gateway) against without them, whether every
observer received every chunk, and the memory each observer costs the API and the gateway."""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import check, percentile, print_table, script_main
from bench.procfs import cpu_ticks, process_tree
from bench.up_process import UpProcess, running_up
from bench.watcher_processes import Watchers

DEVICE = "sim0"
SSE_OBSERVERS = 500
SOCKET_IO_CLIENTS = 100
ROUND_TRIPS = 200
WARMUP = 5
TARGET_RATIO = 1.1
MIB = 1024 * 1024
# The observers' processes yield the CPU to hwq's: on a machine of a few cores, the load
# generator's own parsing would otherwise be what the latency measures.
OBSERVER_NICENESS = 19
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
ROLES = ("api", "gateway", "host")


def cpu_ms_per_command(
    up: UpProcess, watchers: list[Watchers], turn: Any
) -> tuple[Any, dict[str, float]]:
    """Run `turn()`; its result, and the CPU each role spent per round trip in it."""
    pids = {role: up.role_pids(role) for role in ROLES}
    for w in watchers:
        pids[f"{w.kind} observers"] = process_tree(w.process.pid)
    before = {role: cpu_ticks(p) for role, p in pids.items()}
    result = turn()
    spent = {role: cpu_ticks(p) - before[role] for role, p in pids.items()}
    count = len(result[0])
    return result, {role: t / TICKS_PER_S * 1000 / count for role, t in spent.items()}


def round_trips(up: UpProcess, label: str, count: int) -> tuple[list[float], bytes]:
    """`count` submit → reply round trips of `ECHO <label><i>`; their times and the replies."""
    times, replies = [], b""
    for i in range(WARMUP + count):
        started = time.perf_counter()
        submitted = up.request("POST", f"/devices/{DEVICE}/commands",
                               {"kind": "line", "payload": f"ECHO {label}{i}"})  # fmt: skip
        done = up.request("GET", f"/commands/{submitted.body['id']}?wait=10")
        elapsed = time.perf_counter() - started
        if done.body["state"] != "done":
            raise RuntimeError(f"command {done.body['id']} ended {done.body['state']}")
        replies += f"{label}{i}\n".encode()
        if i >= WARMUP:
            times.append(elapsed)
    return times, replies


def until_all_see(up: UpProcess, watchers: list[Watchers], label: str) -> str:
    """Send marker lines until every observer received one; the marker they all saw."""
    for attempt in range(60):
        marker = f"{label}{attempt}"
        round_trips(up, marker, 0)  # only its warm-up: ECHO <marker>0 … 4
        line = f"{marker}{WARMUP - 1}"
        if all(w.wait(line, 5) for w in watchers):
            return line
    raise RuntimeError(f"not every observer received the {label} lines")


def run(quick: bool = False) -> dict[str, Any]:
    sse_count = 50 if quick else SSE_OBSERVERS
    sio_count = 10 if quick else SOCKET_IO_CLIENTS
    trips = 50 if quick else ROUND_TRIPS
    with tempfile.TemporaryDirectory(prefix="hwq-fanout-") as home, running_up(
        Path(home) / "home", sims=1, HWQ_MAX_STREAMS=str(sse_count * 2),
        HWQ_MAX_STREAMS_PER_TOKEN=str(sse_count * 2),
    ) as up:  # fmt: skip
        print("latency alone", file=sys.stderr)
        (alone_before, _), cpu_alone = cpu_ms_per_command(
            up, [], lambda: round_trips(up, "a", trips)
        )
        rss_before = {role: up.resident(role) for role in ("api", "gateway")}
        print(f"connecting {sse_count} SSE and {sio_count} Socket.IO observers", file=sys.stderr)
        api = f"http://127.0.0.1:{up.api_port}"
        sse = Watchers("sse", api, DEVICE, up.token, sse_count, nice=OBSERVER_NICENESS)
        sio = Watchers("socket.io", up.gateway_url, DEVICE, up.token, sio_count,
                       nice=OBSERVER_NICENESS)  # fmt: skip
        try:
            sse.connected()
            sio.connected()
            start = until_all_see(up, [sse, sio], "start")
            rss_with = {role: up.resident(role) for role in ("api", "gateway")}
            print("latency watched", file=sys.stderr)
            (watched, expected), cpu_watched = cpu_ms_per_command(
                up, [sse, sio], lambda: round_trips(up, "w", trips)
            )
            until_all_see(up, [sse, sio], "end")
            # The first line after the watched turn: the end markers' first.
            end = "end00"
            reports = {"sse": sse.report(start, end), "socket.io": sio.report(start, end)}
        finally:
            sse.stop()
            sio.stop()
        print("latency alone again", file=sys.stderr)
        alone_after, _ = round_trips(up, "b", trips)
    # Between the start marker and the end one: the watched turn's replies, all of them.
    wanted = hashlib.sha256(expected).hexdigest()
    complete = {kind: sum(o["sha256"] == wanted for o in r["observers"])
                for kind, r in reports.items()}  # fmt: skip
    alone_p50 = statistics.median([percentile(alone_before, 0.5), percentile(alone_after, 0.5)])
    watched_p50 = percentile(watched, 0.5)
    ratio = watched_p50 / alone_p50
    growth = {role: rss_with[role] - rss_before[role] for role in rss_with}
    return {
        "sse_observers": sse_count,
        "socket_io_clients": sio_count,
        "round_trips": trips,
        "alone_p50_ms": alone_p50 * 1000,
        "alone_p99_ms": percentile(alone_before + alone_after, 0.99) * 1000,
        "watched_p50_ms": watched_p50 * 1000,
        "watched_p99_ms": percentile(watched, 0.99) * 1000,
        "complete_sse": complete["sse"],
        "complete_socket_io": complete["socket.io"],
        "api_rss_mib": [rss_before["api"] / MIB, rss_with["api"] / MIB],
        "gateway_rss_mib": [rss_before["gateway"] / MIB, rss_with["gateway"] / MIB],
        "api_kib_per_sse_observer": growth["api"] / 1024 / sse_count,
        "gateway_kib_per_socket_io_client": growth["gateway"] / 1024 / sio_count,
        "cpu_ms_per_command_alone": cpu_alone,
        "cpu_ms_per_command_watched": cpu_watched,
        "targets": [
            check("p50 watched / alone", ratio, "<=", TARGET_RATIO),
            check(
                "observers missing a chunk", sse_count + sio_count - sum(complete.values()), "<=", 0
            ),  # fmt: skip
        ],
    }


def report(results: dict[str, Any]) -> None:
    r = results
    print_table("stream fan-out (hwq up, one busy device)", [
        ("figure", "value"),
        ("observers", f"{r['sse_observers']} SSE + {r['socket_io_clients']} Socket.IO"),
        ("latency alone p50 / p99", f"{r['alone_p50_ms']:.1f} / {r['alone_p99_ms']:.1f} ms"),
        ("latency watched p50 / p99",
         f"{r['watched_p50_ms']:.1f} / {r['watched_p99_ms']:.1f} ms"),
        ("every chunk: SSE", f"{r['complete_sse']} / {r['sse_observers']}"),
        ("every chunk: Socket.IO", f"{r['complete_socket_io']} / {r['socket_io_clients']}"),
        ("API RSS before → with", "{:.1f} → {:.1f} MiB".format(*r["api_rss_mib"])),
        ("gateway RSS before → with", "{:.1f} → {:.1f} MiB".format(*r["gateway_rss_mib"])),
        ("API per SSE observer", f"{r['api_kib_per_sse_observer']:.1f} KiB"),
        ("gateway per Socket.IO client", f"{r['gateway_kib_per_socket_io_client']:.1f} KiB"),
    ])  # fmt: skip
    alone, watched = r["cpu_ms_per_command_alone"], r["cpu_ms_per_command_watched"]
    print_table("CPU per command (ms)", [("process", "alone", "watched")] + [
        (role, f"{alone.get(role, 0):.2f}", f"{watched[role]:.2f}") for role in watched
    ])  # fmt: skip
    print_table("targets", [("target", "value", "met")] + [
        (f"{t['name']} {t['relation']} {t['target']}", f"{t['value']:.3f}", str(t["met"]))
        for t in r["targets"]
    ])  # fmt: skip


if __name__ == "__main__":
    script_main("stream_fanout", __doc__, run, report)

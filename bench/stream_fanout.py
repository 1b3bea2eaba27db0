"""Many observers on one busy device, through `hwq up` as a user runs it: command latency with
500 SSE observers (API) and 100 Socket.IO clients (gateway) against without them, whether every
observer received every chunk, and the memory each observer costs the API and the gateway.

Commands go as a user sends them: python-requests on one kept-alive session, one
`POST …/commands?wait=10` each. Turns without observers and with them alternate (alone,
watched, alone, …, alone), so a machine that slows down or speeds up during the run moves
both sides alike; the ratio compares the median p50 of each side.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import check, percentile, print_table, script_main
from bench.procfs import cpu_ticks, process_tree
from bench.up_process import UpProcess, running_up
from bench.watcher_processes import Watchers

DEVICE = "sim0"
SSE_OBSERVERS = 500
SOCKET_IO_CLIENTS = 100
ROUND_TRIPS = 300
# Turns with observers; one turn without them comes before each and after the last.
WATCHED_TURNS = 3
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


def round_trips(
    up: UpProcess, session: requests.Session, label: str, count: int
) -> tuple[list[float], bytes]:
    """`count` round trips of `ECHO <label><i>`, one POST ?wait each; their times and replies."""
    url = f"http://127.0.0.1:{up.api_port}/api/v1/devices/{DEVICE}/commands?wait=10"
    times, replies = [], b""
    for i in range(WARMUP + count):
        started = time.perf_counter()
        reply = session.post(url, json={"kind": "line", "payload": f"ECHO {label}{i}"})
        elapsed = time.perf_counter() - started
        command = reply.json()
        if reply.status_code != 200 or command["state"] != "done":
            raise RuntimeError(f"ECHO {label}{i} answered {reply.status_code}: {reply.text}")
        replies += f"{label}{i}\n".encode()
        if i >= WARMUP:
            times.append(elapsed)
    return times, replies


def until_all_see(
    up: UpProcess, session: requests.Session, watchers: list[Watchers], label: str
) -> str:
    """Send marker lines until every observer received one; the marker they all saw."""
    for attempt in range(60):
        marker = f"{label}{attempt}"
        round_trips(up, session, marker, 0)  # only its warm-up: ECHO <marker>0 … 4
        line = f"{marker}{WARMUP - 1}"
        if all(w.wait(line, 5) for w in watchers):
            return line
    raise RuntimeError(f"not every observer received the {label} lines")


@dataclass
class WatchedTurn:
    """One turn with the observers connected: its times, and what they received."""

    times: list[float]
    cpu: dict[str, float]
    complete: dict[str, int]
    rss: dict[str, int]


def watched_turn(
    up: UpProcess, session: requests.Session, sse_count: int, sio_count: int, turn: int, trips: int
) -> WatchedTurn:
    """Connect the observers, run `trips` round trips, check what each received, disconnect."""
    print(f"turn {turn}: connecting {sse_count} SSE and {sio_count} Socket.IO observers",
          file=sys.stderr)  # fmt: skip
    api = f"http://127.0.0.1:{up.api_port}"
    sse = Watchers("sse", api, DEVICE, up.token, sse_count, nice=OBSERVER_NICENESS)
    sio = Watchers("socket.io", up.gateway_url, DEVICE, up.token, sio_count,
                   nice=OBSERVER_NICENESS)  # fmt: skip
    try:
        sse.connected()
        sio.connected()
        start = until_all_see(up, session, [sse, sio], f"start{turn}x")
        rss = {role: up.resident(role) for role in ("api", "gateway")}
        print(f"turn {turn}: latency watched", file=sys.stderr)
        (times, expected), cpu = cpu_ms_per_command(
            up, [sse, sio], lambda: round_trips(up, session, f"w{turn}x", trips)
        )
        until_all_see(up, session, [sse, sio], f"end{turn}x")
        # The first line after the watched turn: the end markers' first.
        end = f"end{turn}x00"
        reports = {"sse": sse.report(start, end), "socket.io": sio.report(start, end)}
    finally:
        sse.stop()
        sio.stop()
    # Between the start marker and the end one: the turn's replies, all of them.
    wanted = hashlib.sha256(expected).hexdigest()
    complete = {kind: sum(o["sha256"] == wanted for o in r["observers"])
                for kind, r in reports.items()}  # fmt: skip
    return WatchedTurn(times, cpu, complete, rss)


def run(quick: bool = False) -> dict[str, Any]:
    sse_count = 50 if quick else SSE_OBSERVERS
    sio_count = 10 if quick else SOCKET_IO_CLIENTS
    trips = 50 if quick else ROUND_TRIPS
    turns = 1 if quick else WATCHED_TURNS
    alone: list[list[float]] = []
    watched: list[WatchedTurn] = []
    with (
        tempfile.TemporaryDirectory(prefix="hwq-fanout-") as home,
        running_up(
            Path(home) / "home",
            sims=1,
            HWQ_MAX_STREAMS=str(sse_count * 2),
            HWQ_MAX_STREAMS_PER_TOKEN=str(sse_count * 2),
        ) as up,  # fmt: skip
        requests.Session() as session,
    ):
        session.headers["Authorization"] = f"Bearer {up.token}"
        print("turn 0: latency alone", file=sys.stderr)
        (first_alone, _), cpu_alone = cpu_ms_per_command(
            up, [], lambda: round_trips(up, session, "a0x", trips)
        )
        alone.append(first_alone)
        rss_before = {role: up.resident(role) for role in ("api", "gateway")}
        for turn in range(1, turns + 1):
            watched.append(watched_turn(up, session, sse_count, sio_count, turn, trips))
            print(f"turn {turn}: latency alone again", file=sys.stderr)
            alone.append(round_trips(up, session, f"a{turn}x", trips)[0])
    alone_p50 = statistics.median(percentile(times, 0.5) for times in alone)
    watched_p50 = statistics.median(percentile(turn.times, 0.5) for turn in watched)
    ratio = watched_p50 / alone_p50
    first = watched[0]
    growth = {role: first.rss[role] - rss_before[role] for role in first.rss}
    complete = {kind: min(turn.complete[kind] for turn in watched) for kind in first.complete}
    return {
        "sse_observers": sse_count,
        "socket_io_clients": sio_count,
        "round_trips": trips,
        "watched_turns": turns,
        "alone_p50s_ms": [percentile(times, 0.5) * 1000 for times in alone],
        "watched_p50s_ms": [percentile(turn.times, 0.5) * 1000 for turn in watched],
        "alone_p50_ms": alone_p50 * 1000,
        "alone_p99_ms": percentile([t for times in alone for t in times], 0.99) * 1000,
        "watched_p50_ms": watched_p50 * 1000,
        "watched_p99_ms": percentile([t for turn in watched for t in turn.times], 0.99) * 1000,
        "complete_sse": complete["sse"],
        "complete_socket_io": complete["socket.io"],
        "api_rss_mib": [rss_before["api"] / MIB, first.rss["api"] / MIB],
        "gateway_rss_mib": [rss_before["gateway"] / MIB, first.rss["gateway"] / MIB],
        "api_kib_per_sse_observer": growth["api"] / 1024 / sse_count,
        "gateway_kib_per_socket_io_client": growth["gateway"] / 1024 / sio_count,
        "cpu_ms_per_command_alone": cpu_alone,
        "cpu_ms_per_command_watched": first.cpu,
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
        ("p50 of each turn alone", " ".join(f"{v:.1f}" for v in r["alone_p50s_ms"]) + " ms"),
        ("p50 of each turn watched",
         " ".join(f"{v:.1f}" for v in r["watched_p50s_ms"]) + " ms"),
        ("latency alone p50 / p99", f"{r['alone_p50_ms']:.1f} / {r['alone_p99_ms']:.1f} ms"),
        ("latency watched p50 / p99",
         f"{r['watched_p50_ms']:.1f} / {r['watched_p99_ms']:.1f} ms"),
        ("every chunk, in every turn: SSE", f"{r['complete_sse']} / {r['sse_observers']}"),
        ("every chunk, in every turn: Socket.IO",
         f"{r['complete_socket_io']} / {r['socket_io_clients']}"),
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

"""Host agents at scale: device workers forked from one warm interpreter.

(a) 50 devices on one host agent: the time from starting the agent until GET /devices shows
every device online, and each device worker's unique memory (USS: Private_Clean +
Private_Dirty from /proc/PID/smaps_rollup, what the process does not share with its
siblings) against a bare Celery solo worker's resident memory. (c) Their idle cost: CPU of
the agent, its fork server and the 50 workers over a window, as % of one core.
(b) 200 devices across 4 host agents: all online, and the round-trip latency of one device
in alternating turns with the other 199 workers running and paused (SIGSTOP), as
`bench.scale` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import common, resume_burst
from bench.footprint import bare_celery_rss
from bench.host_fleet import HostFleet
from bench.latency import BLOCK, DEFAULT_ROUNDS, WARMUP_PER_TURN, hwq_round_trips
from bench.local_stack import Stack
from bench.procfs import CLOCK_TICKS_PER_S, MIB, cpu_ticks, process_tree, resident_bytes

DEFAULT_DEVICES, QUICK_DEVICES = 50, 10
DEFAULT_FLEET, QUICK_FLEET = 200, 20
FLEET_HOSTS = 4
DEFAULT_IDLE_WINDOW_S, QUICK_IDLE_WINDOW_S = 60.0, 10.0
QUICK_ROUNDS = 50
# Workers whose memory is read, each after a command of its own.
USS_SAMPLE = 5
SETTLE_S = 5.0
# After SIGCONT, each resumed worker catches up on what fell due while it was paused
# (`bench/resume_burst.py` counts it). The crowded turn is measured twice, starting this long
# after the resume: at once, as `bench.scale` does, and once the catch-up is over.
RESUME_SETTLES_S = (0.5, 2.0)
ONLINE_TIMEOUT_S = 600.0
USS_RATIO_TARGET, ONLINE_TARGET_S, IDLE_CPU_TARGET_PCT, LATENCY_RATIO_TARGET = 0.5, 10.0, 5.0, 1.2
_LOG_NAME = re.compile(r"/device-([^/]+)\.log$")


def unique_bytes(pid: int) -> int:
    """Memory only this process holds (Private_Clean + Private_Dirty)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


@contextmanager
def sim_farm(folder: Path, count: int, prefix: str) -> Iterator[list[str]]:
    """`count` simulated instruments in one process; yields the links to their terminals."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sim_farm", str(folder), str(count), prefix],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield [str(folder / f"{prefix}{i}") for i in range(count)]
    finally:
        process.terminate()
        process.wait(timeout=30)


def register(
    fleet: HostFleet, names: Sequence[str], links: Sequence[str], hosts: list[str]
) -> None:
    """Register each device over the API and put it on its host (round robin)."""
    for i, (name, link) in enumerate(zip(names, links, strict=True)):
        fleet.register(name, link, hosts[i % len(hosts)])
        common.progress("devices registered", i + 1, len(names))


def wait_all_online(stack: Stack, names: Sequence[str]) -> None:
    """Wait until GET /devices shows every one of `names` online."""
    wanted = set(names)

    def all_online() -> bool:
        items = stack.request("GET", "/devices").body["items"]
        return sum(1 for d in items if d["name"] in wanted and d["online"]) == len(wanted)

    stack.wait_for(all_online, f"{len(wanted)} devices online", timeout=ONLINE_TIMEOUT_S)


def start_agents(stack: Stack, fleet: HostFleet, hosts: list[str], names: Sequence[str]) -> float:
    """Start the host agents together; the seconds until every device is online."""
    started = time.perf_counter()
    for host in hosts:
        stack.spawn(f"host-{host}", "host", "--name", host, with_database=False)
    wait_all_online(stack, names)
    return time.perf_counter() - started


def worker_pids(stack: Stack, hosts: list[str]) -> dict[str, int]:
    """Device → pid of its worker: each worker writes its stdout to its own log file."""
    pids: dict[str, int] = {}
    for pid in agent_tree(stack, hosts):
        with contextlib.suppress(OSError):
            match = _LOG_NAME.search(os.readlink(f"/proc/{pid}/fd/1"))
            if match:
                pids[match.group(1)] = pid
    return pids


def agent_tree(stack: Stack, hosts: list[str]) -> list[int]:
    """The agents, their fork servers and every worker."""
    return [pid for host in hosts for pid in process_tree(stack.processes[f"host-{host}"].pid)]


def run_one_host(quick: bool) -> dict[str, Any]:
    """(a) and (c): devices on one agent: time to online, memory per worker, idle CPU."""
    count = QUICK_DEVICES if quick else DEFAULT_DEVICES
    window = QUICK_IDLE_WINDOW_S if quick else DEFAULT_IDLE_WINDOW_S
    names = [f"hs{i}" for i in range(count)]
    with common.bench_redis() as redis_url, common.hwq_stack(redis_url) as stack:
        fleet = HostFleet(stack)
        with sim_farm(stack.home / "dev", count, "hs") as links:
            register(fleet, names, links, ["bench0"])
            online_s = start_agents(stack, fleet, ["bench0"], names)
            pids = worker_pids(stack, ["bench0"])
            sampled = names[:USS_SAMPLE]
            for name in sampled:
                stack.wait(stack.submit(name, "*IDN?"))
            time.sleep(SETTLE_S)
            uss = [unique_bytes(pids[name]) for name in sampled]
            rss = [resident_bytes(pids[name]) for name in sampled]
            tree = agent_tree(stack, ["bench0"])
            before = cpu_ticks(tree)
            time.sleep(window)
            idle_pct = (cpu_ticks(tree) - before) / CLOCK_TICKS_PER_S / window * 100
        fleet.close()
    with common.bench_redis() as redis_url:
        bare = bare_celery_rss(redis_url)
    uss_mib = sum(uss) / len(uss) / MIB
    ratio = round(uss_mib / (bare / MIB), 2)
    return {
        "devices": count,
        "online_s": round(online_s, 1),
        "worker_uss_mib": round(uss_mib, 1),
        "worker_rss_mib": round(sum(rss) / len(rss) / MIB, 1),
        "bare_celery_rss_mib": round(bare / MIB, 1),
        "uss_ratio": ratio,
        "idle_cpu_pct": round(idle_pct, 2),
        "idle_window_s": window,
        "checks": [
            common.check("device worker USS / bare Celery RSS", ratio, "<=", USS_RATIO_TARGET),
            common.check(
                f"{count} devices on one agent: s to online",
                round(online_s, 1),
                "<=",
                ONLINE_TARGET_S,
            ),  # fmt: skip
            common.check(
                f"{count} idle devices + agent: CPU %",
                round(idle_pct, 2),
                "<=",
                IDLE_CPU_TARGET_PCT,
            ),  # fmt: skip
        ],
    }


def run_fleet(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    """(b): devices across four agents: all online, latency with all of them and with one."""
    count = QUICK_FLEET if quick else DEFAULT_FLEET
    rounds = rounds or (QUICK_ROUNDS if quick else DEFAULT_ROUNDS)
    hosts = [f"bench{i}" for i in range(FLEET_HOSTS)]
    names = [f"hf{i}" for i in range(count)]
    probe = names[0]
    alone: list[float] = []
    crowded: dict[float, list[float]] = {settle: [] for settle in RESUME_SETTLES_S}
    with common.bench_redis() as redis_url, common.hwq_stack(redis_url) as stack:
        fleet = HostFleet(stack)
        with sim_farm(stack.home / "dev", count, "hf") as links:
            register(fleet, names, links, hosts)
            online_s = start_agents(stack, fleet, hosts, names)
            pids = worker_pids(stack, hosts)
            others = [pids[name] for name in names[1:]]
            hwq_round_trips(stack, probe, range(10))
            burst = resume_burst.measure(redis_url, others)
            try:
                for start in range(0, rounds, BLOCK):
                    numbers = range(start, min(rounds, start + BLOCK))
                    # Each crowded turn follows an alone turn, so both start after a pause.
                    for settle in RESUME_SETTLES_S:
                        resume_burst.send(others, signal.SIGSTOP)
                        hwq_round_trips(stack, probe, range(WARMUP_PER_TURN))
                        alone += hwq_round_trips(stack, probe, numbers)
                        resume_burst.send(others, signal.SIGCONT)
                        time.sleep(settle)
                        hwq_round_trips(stack, probe, range(WARMUP_PER_TURN))
                        crowded[settle] += hwq_round_trips(stack, probe, numbers)
                    common.progress("latency turns, all devices and one", numbers.stop, rounds)
            finally:
                resume_burst.send(others, signal.SIGCONT)
        fleet.close()
    alone_ms = common.summary_ms(alone)
    crowded_ms = {settle: common.summary_ms(samples) for settle, samples in crowded.items()}
    ratios = {s: round(c["p50_ms"] / alone_ms["p50_ms"], 2) for s, c in crowded_ms.items()}
    return {
        "devices": count,
        "hosts": FLEET_HOSTS,
        "online_s": round(online_s, 1),
        "latency_1_device": alone_ms,
        "latency_all_devices": {f"{s:g}": c for s, c in crowded_ms.items()},
        "ratio_p50": {f"{s:g}": r for s, r in ratios.items()},
        "resume_burst": burst,
        "checks": [
            common.check(
                f"latency p50 with {count} devices on {FLEET_HOSTS} agents / with 1, "
                f"crowded turn from {settle:g} s after resume",
                ratio,
                "<=",
                LATENCY_RATIO_TARGET,
            )
            for settle, ratio in ratios.items()
        ],
    }


def run(quick: bool = False, rounds: int | None = None, only: str | None = None) -> dict[str, Any]:
    """Both parts, or the one `only` names ("one-host" or "fleet")."""
    one = run_one_host(quick) if only != "fleet" else None
    fleet = run_fleet(quick, rounds) if only != "one-host" else None
    checks = [check for part in (one, fleet) if part for check in part["checks"]]
    return {"one_host": one, "fleet": fleet, "checks": checks}


def report(results: dict[str, Any]) -> None:
    """Print the host-scale table."""
    one, fleet = results["one_host"], results["fleet"]
    rows: list[tuple[str, str]] = [("", "value")]
    if one:
        rows += one_host_rows(one)
    if fleet:
        rows += fleet_rows(fleet)
    common.print_table("Host agents at scale", rows)


def one_host_rows(one: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the one-agent part."""
    return [
        (f"{one['devices']} devices, agent started → all online", f"{one['online_s']} s"),
        ("device worker USS (mean of 5)", f"{one['worker_uss_mib']} MiB"),
        ("device worker RSS (mean of 5)", f"{one['worker_rss_mib']} MiB"),
        ("bare Celery solo worker RSS", f"{one['bare_celery_rss_mib']} MiB"),
        ("USS / bare RSS", str(one["uss_ratio"])),
        (
            f"idle CPU, {one['devices']} devices + agent ({one['idle_window_s']:g} s)",
            f"{one['idle_cpu_pct']} % of one core",
        ),  # fmt: skip
    ]


def fleet_rows(fleet: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the many-agents part."""
    alone, crowded = fleet["latency_1_device"], fleet["latency_all_devices"]
    rows = [
        (
            f"{fleet['devices']} devices on {fleet['hosts']} agents → all online",
            f"{fleet['online_s']} s",
        ),  # fmt: skip
        ("latency p50 / p99 with 1 device", f"{alone['p50_ms']} / {alone['p99_ms']} ms"),
    ]
    for settle, latency in crowded.items():
        rows += [
            (
                f"latency p50 / p99 with {fleet['devices']}, from {settle} s after resume",
                f"{latency['p50_ms']} / {latency['p99_ms']} ms",
            ),
            (f"  p50 with {fleet['devices']} / with 1", str(fleet["ratio_p50"][settle])),
        ]  # fmt: skip
    return rows + resume_burst.rows(fleet["resume_burst"], fleet["devices"] - 1)


def main() -> None:
    """Run from the command line: python -m bench.host_scale [--quick] [--rounds N]
    [--only one-host|fleet]."""
    options: list[tuple[str, dict[str, Any]]] = [
        ("--rounds", {"type": int, "default": None}),
        ("--only", {"choices": ["one-host", "fleet"], "default": None}),
    ]
    common.script_main("host_scale", __doc__, run, report, options)


if __name__ == "__main__":
    main()

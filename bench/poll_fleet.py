"""A classroom of polling devices: what 200 devices holding `GET /devices/{d}/next?wait=30` at
once cost the API's other requests, threads and memory.

One API process as `hwq up` runs it (its default HWQ_API_THREADS), 200 http-poll devices each
with its own device token. Pollers run in a process of their own, each device polling again
as soon as its poll is answered (a new connection each time, as `hwq poll-device` does).
Measured in turns without and with the pollers (A B A B): p50 of `GET /devices` (every
device) and of `GET /commands/{id}` (a queued command) from one kept-alive client; the API
process's threads and resident memory at the end of each turn.
Target: p50 with pollers <= 1.2 x without.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.local_stack import Stack
from bench.procfs import MIB, process_tree, resident_bytes

POLLERS = 200
POLL_WAIT_S = 30
# Requests of each kind per turn, and turns of each kind (without, with, without, with).
REQUESTS = 300
QUICK_REQUESTS = 100
TURNS = 2
# What `hwq up` gives its API (config.settings' default).
API_THREADS = "64"
RATIO_TARGET = 1.2
# How long the pollers take to be all held before a turn is measured.
SETTLE_S = 3.0


def _device_tokens(stack: Stack, names: list[str]) -> list[str]:
    """A device token for each name, made in the stack's database as `hwq token create` does."""
    from config import Settings
    from tasks.db.engine import make_sessions, open_existing
    from tasks.db.tokens import create_token
    from tasks.db.write_lock import write_session

    settings = Settings(home=stack.home)
    engine = open_existing(settings.sqlalchemy_url, settings.sqlite_lock_timeout_s)
    try:
        with write_session(make_sessions(engine)) as session:
            return [create_token(session, "device", f"{n}-board", n) for n in names]
    finally:
        engine.dispose()


async def _poll_forever(port: int, device: str, token: str, counts: dict[int, int]) -> None:
    request = (f"GET /api/v1/devices/{device}/next?wait={POLL_WAIT_S} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            await reader.read()
            writer.close()
        except (OSError, IndexError, ValueError):
            status = 0
            await asyncio.sleep(1)
        counts[status] = counts.get(status, 0) + 1


def _pollers_main(port: int, pairs: list[tuple[str, str]]) -> None:
    """The pollers' process: every device polls until the process is ended."""

    async def main() -> None:
        counts: dict[int, int] = {}
        tasks = []
        for device, token in pairs:
            tasks.append(asyncio.ensure_future(_poll_forever(port, device, token, counts)))
            await asyncio.sleep(0.005)  # the polls come in over a second, not in one burst
        await asyncio.gather(*tasks)

    asyncio.run(main())


def _api_footprint(stack: Stack) -> tuple[int, float]:
    """Threads and resident MiB of the API's process tree."""
    pids = process_tree(stack.processes["api"].pid)
    threads = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                threads += int(line.split()[1])
    return threads, round(sum(resident_bytes(p) for p in pids) / MIB, 1)


def _turn(stack: Stack, command_id: str, count: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"devices": [], "command": []}
    for _ in range(count):
        for kind, path in (("devices", "/devices"), ("command", f"/commands/{command_id}")):
            started = time.perf_counter()
            reply = stack.request("GET", path)
            samples[kind].append(time.perf_counter() - started)
            assert reply.status == 200, reply.body
    return samples


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the turns; returns the figures for the report."""
    count = QUICK_REQUESTS if quick else REQUESTS
    names = [f"board{i:03d}" for i in range(POLLERS)]
    samples: dict[str, dict[str, list[float]]] = {
        phase: {"devices": [], "command": []} for phase in ("without", "with")
    }
    footprint: dict[str, list[tuple[int, float]]] = {"without": [], "with": []}
    held: list[int] = []
    with common.bench_redis() as redis_url, common.hwq_stack(
        redis_url, HWQ_API_THREADS=API_THREADS
    ) as stack:  # fmt: skip
        for name in [*names, "target"]:
            body = {"name": name, "transport": "http-poll"}
            assert stack.request("POST", "/devices", body=body).status == 201
        tokens = _device_tokens(stack, names)
        # A command nobody polls for: it stays queued, and each GET reads it.
        command_id = stack.submit("target", "*IDN?")
        pairs = list(zip(names, tokens, strict=True))
        _turn(stack, command_id, 20)  # warm the API's caches and the client's connection
        for turn in range(TURNS):
            for phase in ("without", "with"):
                pollers = None
                if phase == "with":
                    pollers = multiprocessing.Process(
                        target=_pollers_main, args=(stack.api_port, pairs), daemon=True
                    )
                    pollers.start()
                    time.sleep(SETTLE_S)
                    online = sum(
                        d["online"] for d in stack.request("GET", "/devices").body["items"]
                    )
                    held.append(online)
                measured = _turn(stack, command_id, count)
                footprint[phase].append(_api_footprint(stack))
                for kind, values in measured.items():
                    samples[phase][kind] += values
                if pollers is not None:
                    pollers.terminate()
                    pollers.join(10)
                    time.sleep(SETTLE_S)  # the API lets go of the polls whose clients left
                common.progress("turns", turn * 2 + (phase == "with") + 1, TURNS * 2)
    results: dict[str, Any] = {"pollers": POLLERS, "held_online": held}
    checks = []
    for kind in ("devices", "command"):
        without = common.summary_ms(samples["without"][kind])
        with_pollers = common.summary_ms(samples["with"][kind])
        ratio = round(with_pollers["p50_ms"] / without["p50_ms"], 2)
        results[kind] = {"without": without, "with": with_pollers, "ratio_p50": ratio}
        checks.append({"name": f"poll fleet: GET {kind} p50 with/without {POLLERS} polls",
                       "value": ratio, "relation": "<=", "target": RATIO_TARGET,
                       "met": ratio <= RATIO_TARGET})  # fmt: skip
    results["threads"] = {p: [f[0] for f in footprint[p]] for p in footprint}
    results["rss_mib"] = {p: [f[1] for f in footprint[p]] for p in footprint}
    results["checks"] = checks
    return results


def report(results: dict[str, Any]) -> None:
    """Print the table."""
    rows = [("", "p50 ms without", "p50 ms with", "ratio (target <= 1.2)", "p99 without / with")]
    for kind, label in (("devices", "GET /devices"), ("command", "GET /commands/{id}")):
        figures = results[kind]
        rows.append((label, str(figures["without"]["p50_ms"]), str(figures["with"]["p50_ms"]),
                     str(figures["ratio_p50"]),
                     f"{figures['without']['p99_ms']} / {figures['with']['p99_ms']}"))  # fmt: skip
    common.print_table(f"{results['pollers']} devices holding next?wait={POLL_WAIT_S}", rows)
    common.print_table(
        "The API process (each turn's end)",
        [
            ("", "threads", "RSS MiB"),
            ("without pollers", str(results["threads"]["without"]),
             str(results["rss_mib"]["without"])),
            ("with pollers", str(results["threads"]["with"]), str(results["rss_mib"]["with"])),
            ("devices online with pollers", str(results["held_online"]), ""),
        ],
    )  # fmt: skip


def main() -> None:
    """Run from the command line: python -m bench.poll_fleet [--quick]."""
    common.script_main("poll_fleet", __doc__, run, report)


if __name__ == "__main__":
    main()

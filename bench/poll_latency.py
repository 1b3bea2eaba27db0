"""HTTP-polling devices: round trips through `hwq poll-device` against a device worker, and how
many long polls one API process holds with a handful of threads.

- round trip: `POST …/commands` then `GET /commands/{id}?wait=10`, `ECHO i` to a simulated
  SCPI device on a pty, in alternating turns: served by its device worker, and by a
  `hwq poll-device` agent (its own simulator) long-polling `next?wait=30`.
- held polls: N concurrent `GET /devices/{d}/next?wait=5` (no command comes) against an API
  with HWQ_API_THREADS=4; the time until all are answered, over the wait. One thread per poll
  would need N / 4 waits; the ratio shows the front door holds them without one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import common
from bench.local_stack import Stack

API_THREADS = "4"
HELD_WAIT_S = 5


def _round_trips(stack: Stack, device: str, numbers: range) -> list[float]:
    samples = []
    for i in numbers:
        started = time.perf_counter()
        ended = stack.wait(stack.submit(device, f"ECHO {i}"))
        samples.append(time.perf_counter() - started)
        assert ended["response"] == {"text": str(i)}, ended
    return samples


def _polling_device(stack: Stack, name: str) -> None:
    link = stack.home / "dev" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    stack.spawn(f"sim-{name}", "sim", "--name", name, "--home", str(stack.home), "--link",
                str(link), with_database=False)  # fmt: skip
    stack.wait_for(link.exists, f"simulator {name}")
    body = {"name": name, "transport": "http-poll"}
    assert stack.request("POST", "/devices", body=body).status == 201
    token = stack.hwq("token", "create", "--role", "device", "--name", name,
                      "--device", name).strip()  # fmt: skip
    stack.spawn(f"agent-{name}", "poll-device", name, "--url",
                f"http://127.0.0.1:{stack.api_port}", "--token", token, "--port", str(link),
                with_database=False)  # fmt: skip
    stack.wait_for(lambda: stack.device(name)["online"], f"agent of {name}")


async def _held(port: int, path: str, token: str, count: int) -> list[int]:
    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Connection: close\r\n\r\n".encode())  # fmt: skip
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.read()
        writer.close()
        return status

    return list(await asyncio.gather(*(one() for _ in range(count))))


def run(quick: bool = False, polls: int | None = None) -> dict[str, Any]:
    """Measure both figures; returns them for the report."""
    rounds = 100 if quick else 400
    held = polls or (200 if quick else 800)
    with common.bench_redis() as redis_url, common.hwq_stack(
        redis_url, HWQ_API_THREADS=API_THREADS, HWQ_MAX_WAITS_PER_TOKEN=str(held + 10),
        HWQ_MAX_WAITS=str(held + 10),
    ) as stack:  # fmt: skip
        stack.add_sim_device("worked")
        _polling_device(stack, "polled")
        samples: dict[str, list[float]] = {"worker": [], "poll_agent": []}
        turn = 50
        for start in range(0, rounds, turn):
            numbers = range(start, start + turn)
            samples["worker"] += _round_trips(stack, "worked", numbers)
            samples["poll_agent"] += _round_trips(stack, "polled", numbers)
            common.progress("round trips of each", start + turn, rounds)
        stack.stop("agent-polled")
        body = {"name": "idle", "transport": "http-poll"}
        assert stack.request("POST", "/devices", body=body).status == 201
        token = stack.hwq("token", "create", "--role", "device", "--name", "idle",
                          "--device", "idle").strip()  # fmt: skip
        path = f"/api/v1/devices/idle/next?wait={HELD_WAIT_S}"
        started = time.perf_counter()
        statuses = asyncio.run(_held(stack.api_port, path, token, held))
        held_s = time.perf_counter() - started
    worker, poll_agent = (
        common.summary_ms(samples["worker"]),
        common.summary_ms(samples["poll_agent"]),
    )
    return {
        "worker": worker,
        "poll_agent": poll_agent,
        "ratio_p50": round(poll_agent["p50_ms"] / worker["p50_ms"], 2),
        "held_polls": held,
        "held_answered_204": statuses.count(204),
        "held_s": round(held_s, 2),
        "held_over_wait": round(held_s / HELD_WAIT_S, 2),
        "thread_per_poll_over_wait": round(held / int(API_THREADS), 1),
    }


def report(results: dict[str, Any]) -> None:
    """Print the two tables."""
    rows = [("", "p50 ms", "p99 ms", "mean ms")]
    for name in ("worker", "poll_agent"):
        figures = results[name]
        rows.append((name, str(figures["p50_ms"]), str(figures["p99_ms"]), str(figures["mean_ms"])))
    rows.append(("poll_agent / worker", str(results["ratio_p50"]), "", ""))
    common.print_table("Round trip: submit → reply through ?wait", rows)
    common.print_table(
        f"Held polls on one API process with {API_THREADS} threads",
        [
            ("polls", "answered 204", "time / wait", "one thread each would be"),
            (str(results["held_polls"]), str(results["held_answered_204"]),
             str(results["held_over_wait"]), str(results["thread_per_poll_over_wait"])),
        ],
    )  # fmt: skip


def main() -> None:
    """Run from the command line: python -m bench.poll_latency [--quick] [--polls N]."""
    common.script_main(
        "poll_latency", __doc__, run, report, [("--polls", {"type": int, "default": None})]
    )


if __name__ == "__main__":
    main()

"""Peer latency: hwq as `hwq up` ships it against the hand-built peer (bench/handbuilt_peer.py)
on the same Redis, the same kind of simulator on a pty, and the same HTTP client (one
kept-alive requests.Session each).

Four sides take turns in blocks of 100, as in bench/latency.py, each block starting with
the next side; hwq's deferred work settles after each of its turns, so it counts in hwq's time:
- `handbuilt`: POST /query to the gunicorn-served Flask endpoint that waits on Celery;
- `hwq_client_run`: `hwq.Client.run()`, the Python client (one request: POST ?wait);
- `hwq_post_wait`: requests doing POST /devices/{name}/commands?wait=10;
- `hwq_submit_then_wait`: requests doing the POST, then GET /commands/{id}?wait=10.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.up_process import running_up
from config.settings import DEFAULT_KEY_PREFIX
from hwq import Client
from hwq.embedded_redis import free_port

DEFAULT_ROUNDS = 500
BLOCK = 100
WARMUP_PER_TURN = 5
# gunicorn threads: a threaded server, as DESIGN §1 asks of anything holding waits.
GUNICORN_THREADS = 8
# `hwq up`'s own log level: each request and command is logged, as a user's terminal shows.
SHIPPED_LOG_LEVEL = "INFO"
START_TIMEOUT_S = 60.0
SIDES = ("handbuilt", "hwq_client_run", "hwq_post_wait", "hwq_submit_then_wait")


@contextmanager
def handbuilt_peer(home: Path, redis_url: str) -> Iterator[str]:
    """The hand-built peer on its own simulator, its processes' output in HOME/logs; yields
    its endpoint's URL."""
    link = home / "dev" / "handbuilt"
    logs = home / "logs"
    link.parent.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "HANDBUILT_BROKER_URL": redis_url, "HANDBUILT_PORT": str(link)}
    commands = {
        "sim": [sys.executable, "-m", "hwq.cli", "sim", "--kind", "scpi", "--name",
                "handbuilt", "--home", str(home), "--link", str(link)],
        "worker": [sys.executable, "-m", "celery", "-A", "bench.handbuilt_peer", "worker",
                   "--pool", "solo", "--hostname", "handbuilt@bench", "--loglevel", "WARNING",
                   "--without-gossip", "--without-mingle"],
        "web": [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class",
                "gthread", "--threads", str(GUNICORN_THREADS), "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", "bench.handbuilt_peer:web"],
    }  # fmt: skip
    children: list[subprocess.Popen[bytes]] = []
    url = f"http://127.0.0.1:{port}/query"
    try:
        for name, argv in commands.items():
            with (logs / f"handbuilt-{name}.log").open("ab") as log:
                children.append(subprocess.Popen(argv, env=env, stdout=log,
                                                 stderr=subprocess.STDOUT))  # fmt: skip
            if name == "sim":
                _wait_until(link.exists, "the hand-built peer's simulator", children, logs)
        with requests.Session() as session:
            _wait_until(lambda: session.post(url, json={"payload": "*IDN?"}, timeout=15).ok,
                        "the hand-built peer", children, logs)  # fmt: skip
        yield url
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


def _wait_until(
    check: Callable[[], bool], what: str, children: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        if any(child.poll() is not None for child in children):
            break
        time.sleep(0.2)
    output = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs.glob("handbuilt-*"))
    raise RuntimeError(f"{what} did not start:\n{output}")


def timed(numbers: range, round_trip: Callable[[int], str]) -> list[float]:
    """Time `round_trip(i)` for each i in turn; each must answer `i` (the ECHO's text)."""
    samples = []
    for i in numbers:
        started = time.perf_counter()
        text = round_trip(i)
        samples.append(time.perf_counter() - started)
        assert text == str(i), f"ECHO {i} answered {text!r}"
    return samples


def handbuilt_echo(session: requests.Session, url: str, i: int) -> str:
    """POST /query `ECHO i` to the hand-built endpoint."""
    return str(session.post(url, json={"payload": f"ECHO {i}"}, timeout=15).json()["text"])


def client_run_echo(client: Client, device: str, i: int) -> str:
    """`Client.run(device, "ECHO i")`."""
    return str(client.run(device, f"ECHO {i}").text)


def post_wait_echo(session: requests.Session, base: str, device: str, i: int) -> str:
    """POST …/commands?wait=10 with requests."""
    body = {"kind": "line", "payload": f"ECHO {i}"}
    url = f"{base}/devices/{device}/commands?wait=10"
    reply = session.post(url, json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["response"]["text"])


def submit_then_wait_echo(session: requests.Session, base: str, device: str, i: int) -> str:
    """POST the command, then GET it with ?wait=10, with requests."""
    body = {"kind": "line", "payload": f"ECHO {i}"}
    submitted = session.post(f"{base}/devices/{device}/commands", json=body, timeout=30)
    reply = session.get(f"{base}/commands/{submitted.json()['id']}?wait=10", timeout=30)
    return str(reply.json()["response"]["text"])


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Measure the four sides in one run, taking turns, and return figures and ratios."""
    rounds = rounds or (50 if quick else DEFAULT_ROUNDS)
    samples: dict[str, list[float]] = {name: [] for name in SIDES}
    device = "sim0"
    with (
        common.bench_redis() as redis_url,
        tempfile.TemporaryDirectory(prefix="hwq-peer-") as folder,
        running_up(
            Path(folder) / "up", sims=1, HWQ_REDIS_URL=redis_url, HWQ_LOG_LEVEL=SHIPPED_LOG_LEVEL
        ) as up,  # fmt: skip
        handbuilt_peer(Path(folder) / "handbuilt", redis_url) as url,
    ):
        base = f"http://127.0.0.1:{up.api_port}/api/v1"
        with (
            requests.Session() as handbuilt_session,
            requests.Session() as hwq_session,
            Client(base, up.token) as client,
        ):
            hwq_session.headers["Authorization"] = f"Bearer {up.token}"
            echoes: dict[str, Callable[[int], str]] = {
                "handbuilt": lambda i: handbuilt_echo(handbuilt_session, url, i),
                "hwq_client_run": lambda i: client_run_echo(client, device, i),
                "hwq_post_wait": lambda i: post_wait_echo(hwq_session, base, device, i),
                "hwq_submit_then_wait": lambda i: submit_then_wait_echo(
                    hwq_session, base, device, i
                ),
            }
            for block, start in enumerate(range(0, rounds, BLOCK)):
                numbers = range(start, min(rounds, start + BLOCK))
                # Each block starts with the next side, so no side always follows the same one.
                order = SIDES[block % len(SIDES) :] + SIDES[: block % len(SIDES)]
                for name in order:
                    timed(range(WARMUP_PER_TURN), echoes[name])
                    samples[name] += timed(numbers, echoes[name])
                    if name.startswith("hwq"):
                        common.settle_on(redis_url, DEFAULT_KEY_PREFIX)
                common.progress("round trips of each", numbers.stop, rounds)
    figures = {name: common.summary_ms(samples[name]) for name in SIDES}
    peer = figures["handbuilt"]
    ratios = {
        name: {
            "p50": round(figures[name]["p50_ms"] / peer["p50_ms"], 2),
            "p99": round(figures[name]["p99_ms"] / peer["p99_ms"], 2),
        }
        for name in SIDES[1:]
    }
    run_ratio = ratios["hwq_client_run"]
    return {
        **figures,
        "ratios_to_handbuilt": ratios,
        "checks": [
            common.check("Client.run p50 / hand-built p50", run_ratio["p50"], "<=", 1.0),
            common.check("Client.run p99 / hand-built p99", run_ratio["p99"], "<=", 1.2),
        ],
    }


def report(results: dict[str, Any]) -> None:
    """Print the peer latency table."""
    rows = [("", "p50 ms", "p99 ms", "mean ms", "p50 ×peer", "p99 ×peer")]
    for name in SIDES:
        figures = results[name]
        ratio = results["ratios_to_handbuilt"].get(name, {"p50": 1.0, "p99": 1.0})
        rows.append((name, str(figures["p50_ms"]), str(figures["p99_ms"]),
                     str(figures["mean_ms"]), str(ratio["p50"]), str(ratio["p99"])))  # fmt: skip
    common.print_table("Peer latency: one line command over HTTP, hwq vs hand-built", rows)


def main() -> None:
    """Run from the command line: python -m bench.peer_latency [--quick] [--rounds N]."""
    common.script_main(
        "peer_latency", __doc__, run, report, [("--rounds", {"type": int, "default": None})]
    )


if __name__ == "__main__":
    main()

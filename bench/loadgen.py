"""A load generator in its own process: N threads on keep-alive connections, one JSON line out.

`python -m bench.loadgen --url URL --token T --method GET --concurrency 16 --duration 10`
prints {"requests", "errors", "rps", "p50_ms", "p99_ms", "error_kinds"}. Any status outside
2xx, and any failed connection, counts as an error; latencies are of the 2xx replies.
It stops by itself at the duration or at the request cap, whichever comes first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.common import percentile

# A cap on requests over the whole run, so a fast server cannot make the run unbounded.
MAX_REQUESTS = 1_000_000
# The longest run accepted, whatever --duration says.
MAX_DURATION_S = 600.0
# A single request slower than this is an error rather than a hang.
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Tally:
    """What one thread saw: latencies of 2xx replies and the errors by kind."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Target:
    """Where and what to send."""

    host: str
    port: int
    path: str
    method: str
    headers: dict[str, str]
    body: bytes | None


def parse_target(url: str, method: str, token: str, body_json: str | None) -> Target:
    """The request every thread repeats."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"--url must be an http:// URL, not {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None
    if body_json is not None:
        body = json.dumps(json.loads(body_json)).encode()
        headers["Content-Type"] = "application/json"
    return Target(parts.hostname, parts.port or 80, path, method.upper(), headers, body)


class Budget:
    """Hands out request slots until the deadline or the cap."""

    def __init__(self, deadline: float, cap: int) -> None:
        self.deadline = deadline
        self.left = cap
        self.lock = threading.Lock()

    def take(self) -> bool:
        """One more request may start."""
        with self.lock:
            if self.left <= 0 or time.monotonic() >= self.deadline:
                return False
            self.left -= 1
            return True


def hammer(target: Target, budget: Budget, tally: Tally) -> None:
    """Send the request back to back on one keep-alive connection, reconnecting on failure."""
    connection: http.client.HTTPConnection | None = None
    while budget.take():
        if connection is None:
            connection = http.client.HTTPConnection(
                target.host, target.port, timeout=REQUEST_TIMEOUT_S
            )
        started = time.perf_counter()
        try:
            connection.request(target.method, target.path, target.body, target.headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as e:
            tally.errors[type(e).__name__] += 1
            connection.close()
            connection = None
            continue
        if 200 <= response.status < 300:
            tally.latencies.append(time.perf_counter() - started)
        else:
            tally.errors[str(response.status)] += 1
        if response.will_close:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def generate(target: Target, concurrency: int, duration: float, cap: int) -> dict[str, Any]:
    """Run the threads and sum up what they saw."""
    started = time.monotonic()
    budget = Budget(started + min(duration, MAX_DURATION_S), cap)
    tallies = [Tally() for _ in range(concurrency)]
    threads = [
        threading.Thread(target=hammer, args=(target, budget, tally), daemon=True)
        for tally in tallies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies = [sample for tally in tallies for sample in tally.latencies]
    errors: Counter[str] = Counter()
    for tally in tallies:
        errors.update(tally.errors)
    error_count = sum(errors.values())
    requests = len(latencies) + error_count
    return {
        "requests": requests,
        "errors": error_count,
        "rps": round(requests / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3) if latencies else None,
        "error_kinds": dict(errors),
    }


def main() -> None:
    """Run from the command line and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds.")
    parser.add_argument("--max-requests", type=int, default=MAX_REQUESTS)
    parser.add_argument("--body-json", default=None, help="A JSON body sent with each request.")
    args = parser.parse_args()
    target = parse_target(args.url, args.method, args.token, args.body_json)
    result = generate(target, args.concurrency, args.duration, args.max_requests)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

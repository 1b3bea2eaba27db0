"""API load: requests per second and latency of reading and of submitting commands.

A separate process (`bench.loadgen`) drives the API with many keep-alive connections at once:
first `GET /commands/{id}` of one finished command, then `POST /devices/{name}/commands` of
`ECHO x` line commands, which the device's worker drains as they come.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.common import bench_redis, check, hwq_stack, print_table, script_main
from bench.local_stack import Stack

# Connections open at once from the load generator.
DEFAULT_CONCURRENCY = 16
# Seconds each load runs (QUICK_DURATION_S for a smoke test).
DEFAULT_DURATION_S = 10.0
QUICK_DURATION_S = 3.0
# High enough that the submit load never meets the queue cap (a 429) during a run.
QUEUE_CAP = "1000000"
# Time beyond the duration the load generator may take to start and finish.
LOADGEN_GRACE_S = 60.0


def load(stack: Stack, method: str, path: str, concurrency: int, duration: float,
         body: object = None) -> dict[str, Any]:  # fmt: skip
    """Run the load generator against one endpoint and return its figures."""
    argv = [
        sys.executable, "-m", "bench.loadgen", "--url", stack.base + path,
        "--token", stack.admin_token, "--method", method,
        "--concurrency", str(concurrency), "--duration", str(duration),
    ]  # fmt: skip
    if body is not None:
        argv += ["--body-json", json.dumps(body)]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + LOADGEN_GRACE_S
    )
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run(
    quick: bool = False, concurrency: int | None = None, duration: float | None = None
) -> dict[str, Any]:
    """Load the read and the submit endpoints in turn and return their figures."""
    concurrency = concurrency or DEFAULT_CONCURRENCY
    duration = duration or (QUICK_DURATION_S if quick else DEFAULT_DURATION_S)
    with bench_redis() as redis_url, hwq_stack(redis_url, HWQ_QUEUE_CAP=QUEUE_CAP) as stack:
        stack.add_sim_device("load0")
        command_id = stack.submit("load0", "*IDN?")
        stack.wait(command_id)
        read = load(stack, "GET", f"/commands/{command_id}", concurrency, duration)
        submit = load(
            stack, "POST", "/devices/load0/commands", concurrency, duration,
            body={"kind": "line", "payload": "ECHO x"},
        )  # fmt: skip
    at = f"at {concurrency} connections"
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "get_command": read,
        "post_command": submit,
        "checks": [
            check(f"GET /commands/{{id}} errors {at}", read["errors"], "<=", 0),
            check(f"POST /devices/{{name}}/commands errors {at}", submit["errors"], "<=", 0),
        ],
    }


def report(results: dict[str, Any]) -> None:
    """Print the load table."""
    rows = [("", "requests", "errors", "req/s", "p50 ms", "p99 ms")]
    for label, name in (
        ("GET /commands/{id}", "get_command"),
        ("POST /devices/{name}/commands", "post_command"),
    ):
        figures = results[name]
        errors = str(figures["errors"])
        if figures["error_kinds"]:
            errors += f" {figures['error_kinds']}"
        rows.append((label, str(figures["requests"]), errors, str(figures["rps"]),
                     str(figures["p50_ms"]), str(figures["p99_ms"])))  # fmt: skip
    print_table(
        f"API load: {results['concurrency']} connections for {results['duration_s']} s", rows
    )


def main() -> None:
    """Run from the command line: python -m bench.api_load [--quick]."""
    script_main(
        "api_load", __doc__, run, report,
        [("--concurrency", {"type": int, "default": DEFAULT_CONCURRENCY}),
         ("--duration", {"type": float, "default": None, "help": "Seconds per endpoint."})],
    )  # fmt: skip


if __name__ == "__main__":
    main()

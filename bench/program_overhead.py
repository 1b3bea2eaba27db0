"""Program overhead: what the sandbox adds to running a device program that does nothing.

Each round runs `pass` three ways, one after another: a bare `python -I -S -c pass`
subprocess, the sandbox without namespaces (limits, pipes, device channel, private folder),
and the full sandbox (namespaces, hidden paths, another user). Prints median milliseconds
and each one's ratio to the bare interpreter.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import common
from worker_host.program_limits import ProgramLimits
from worker_host.program_sandbox import run_program

DEFAULT_ROUNDS = 50
QUICK_ROUNDS = 10
# Milliseconds the full sandbox may add to a bare interpreter's run: small beside a program's
# default 5 s timeout, and paid once per program, not per device request.
ADDED_MS_TARGET = 300.0


def _median_ms(run: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the three ways."""
    rounds = QUICK_ROUNDS if quick else DEFAULT_ROUNDS
    bare = _median_ms(
        lambda: subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True), rounds
    )
    plain = ProgramLimits(namespaces=False)
    limits_only = _median_ms(lambda: run_program("pass", 10, limits=plain), rounds)
    full = _median_ms(lambda: run_program("pass", 10), rounds)
    return {
        "rounds": rounds,
        "bare_ms": bare,
        "limits_only_ms": limits_only,
        "full_sandbox_ms": full,
        "checks": [
            common.check(
                "ms the full sandbox adds", round(full - bare, 1), "<=", ADDED_MS_TARGET
            ),
        ],
    }  # fmt: skip


def report(results: dict[str, Any]) -> None:
    """Print the overhead table."""
    bare = results["bare_ms"]
    rows = [("", "median ms", "ratio")]
    for label, key in (
        ("bare python -I -S", "bare_ms"),
        ("sandbox, limits only", "limits_only_ms"),
        ("sandbox, namespaces too", "full_sandbox_ms"),
    ):
        rows.append((label, str(results[key]), str(round(results[key] / bare, 2))))
    common.print_table(f"Program overhead ({results['rounds']} rounds)", rows)


def main() -> None:
    """Run from the command line: python -m bench.program_overhead [--quick]."""
    common.script_main("program_overhead", __doc__, run, report)


if __name__ == "__main__":
    main()

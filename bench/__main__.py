"""`python -m bench` (`make bench`): every benchmark in one run, a table, and a results file."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from bench.common import QUICK_HELP, machine, print_table, write_results

# Each module has run(quick: bool) -> dict with a "checks" list, and report(results).
BENCHMARKS = (
    "latency",
    "peer_latency",
    "throughput",
    "api_load",
    "footprint",
    "scale",
    "recorder_lag",
)


def main() -> None:
    """Run the benchmarks named (all by default) and print which targets are met."""
    parser = argparse.ArgumentParser(description=__doc__)
    # Checked by hand: argparse checks an empty `nargs="*"` list against `choices` and fails.
    parser.add_argument("names", nargs="*", help=f"Any of {', '.join(BENCHMARKS)}; default all.")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        known = ", ".join(BENCHMARKS)
        parser.error(f"no benchmark named {', '.join(unknown)}; choose from {known}")
    checks: list[dict[str, Any]] = []
    path = None
    for name in args.names or BENCHMARKS:
        print(f"== {name}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        results = module.run(quick=args.quick)
        module.report(results)
        path = write_results(name, results)
        checks += results.get("checks", [])
    rows = [("target", "measured", "goal", "met")]
    for item in checks:
        goal = f"{item['relation']} {item['target']}"
        rows.append((item["name"], str(item["value"]), goal, "yes" if item["met"] else "NO"))
    print_table(f"Targets on {machine()['cpus']} CPUs, {machine()['cpu']}", rows)
    if path:
        print(f"results in {path}")


if __name__ == "__main__":
    main()

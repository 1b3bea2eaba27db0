"""The console's first load: bytes transferred and time to the device list, in Chromium.

Each round opens a new browser context (an empty cache), loads `/`, signs in with the token
(typed and Enter, as a user would) and stops the clock when the device list first shows (the
console sets a User Timing mark then); then reloads the same tab, where the token is kept in
the tab and the files are revalidated by ETag. Times are from the navigation's start, as the
page's own clock saw them; bytes are the transfer sizes the browser's Resource Timing reports,
headers included.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import common
from bench.browser import chromium, chromium_missing

DEVICES = ("sim0", "sim1")
DEFAULT_ROUNDS = 10
QUICK_ROUNDS = 3
# The console is a handful of small files; a first load above this has grown a dependency.
FIRST_LOAD_BYTES_TARGET = 100_000

# Longest a load may take before the run gives up, and how often the page is asked.
LOAD_TIMEOUT_S = 60.0
POLL_S = 0.05
# In the page: when the device list first showed (the mark the console sets), and what the
# load transferred.
_LIST_SHOWN = """() => {
  const [mark] = performance.getEntriesByName("hwq-device-list-shown");
  return mark ? mark.startTime : null;
}"""
_TRANSFERRED = """() => {
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  return {bytes: entries.reduce((sum, e) => sum + e.transferSize, 0), requests: entries.length};
}"""


def run(quick: bool = False) -> dict[str, Any]:
    """Load the console `rounds` times, cold and then warm; the medians and every round."""
    missing = chromium_missing()
    if missing:
        # `make bench` carries on with the other benchmarks on a machine without a browser.
        return {"skipped": missing, "checks": []}
    rounds = QUICK_ROUNDS if quick else DEFAULT_ROUNDS
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    with common.bench_redis() as redis_url, common.hwq_stack(redis_url) as stack:
        for name in DEVICES:
            stack.add_sim_device(name)
        origin = f"http://127.0.0.1:{stack.api_port}"
        with chromium() as browser:
            for i in range(rounds):
                context = browser.new_context()
                page = context.new_page()
                page.goto(origin + "/")
                page.get_by_label("Token").fill(stack.admin_token)
                page.get_by_label("Token").press("Enter")
                cold.append(_measured(page))
                page.reload()
                warm.append(_measured(page))
                context.close()
                common.progress("console loads", i + 1, rounds)
    results: dict[str, Any] = {
        "rounds": rounds,
        "devices": len(DEVICES),
        "cold": _medians(cold),
        "warm": _medians(warm),
        "cold_rounds": cold,
        "warm_rounds": warm,
    }
    results["checks"] = [
        common.check(
            "console first load, bytes", results["cold"]["bytes"], "<=", FIRST_LOAD_BYTES_TARGET
        )
    ]
    return results


def _measured(page: Any) -> dict[str, float]:
    # Polled from here: Playwright's wait_for_function evaluates strings in the page, which
    # the console's Content-Security-Policy refuses.
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while (shown_ms := page.evaluate(_LIST_SHOWN)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the device list did not show within {LOAD_TIMEOUT_S} s")
        time.sleep(POLL_S)
    transferred = page.evaluate(_TRANSFERRED)
    return {"ms_to_device_list": round(shown_ms, 1), **transferred}


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def report(results: dict[str, Any]) -> None:
    """Print the first-load table."""
    if "skipped" in results:
        print(f"\nConsole load: skipped, {results['skipped']}")
        return
    rows = [("load", "ms to device list (median)", "bytes transferred", "requests")]
    for kind, label in (("cold", "first (empty cache, sign in)"), ("warm", "reload (revalidated)")):
        figures = results[kind]
        rows.append((label, str(figures["ms_to_device_list"]), str(int(figures["bytes"])),
                     str(int(figures["requests"]))))  # fmt: skip
    title = f"Console load, {results['rounds']} rounds, {results['devices']} devices"
    common.print_table(title, rows)


def main() -> None:
    """Run from the command line: python -m bench.console_load [--quick]."""
    common.script_main("console_load", __doc__, run, report)


if __name__ == "__main__":
    main()

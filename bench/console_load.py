"""The console's first load: bytes transferred and time to the device list, in Chromium.

Each round opens a new browser context (an empty cache), loads `/`, signs in with the token
(typed and Enter, as a user would) and stops the clock when the device list shows every
device; then reloads the same tab, where the token is kept in the tab and the files are
revalidated by ETag. Times are from the navigation's start, as the page's own clock
(`performance.now()`) saw them; bytes are the transfer sizes the browser's Resource Timing
reports, headers included.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import common
from bench.browser import chromium, chromium_missing

DEVICES = ("sim0", "sim1")
DEFAULT_ROUNDS = 10
QUICK_ROUNDS = 3
# The console is a handful of small files; a first load above this has grown a dependency.
FIRST_LOAD_BYTES_TARGET = 100_000

# In the page: the time the device list showed every device, and what the load transferred.
_LIST_SHOWN = f"document.querySelectorAll('tr[data-device]').length >= {len(DEVICES)}"
_TRANSFERRED = """() => {
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  return {bytes: entries.reduce((sum, e) => sum + e.transferSize, 0), requests: entries.length};
}"""


def run(quick: bool = False) -> dict[str, Any]:
    """Load the console `rounds` times, cold and then warm; the medians and every round."""
    missing = chromium_missing()
    if missing:
        raise SystemExit(f"console_load needs a browser: {missing}")
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
    shown_ms = page.wait_for_function(f"{_LIST_SHOWN} && performance.now()").json_value()
    transferred = page.evaluate(_TRANSFERRED)
    return {"ms_to_device_list": round(shown_ms, 1), **transferred}


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def report(results: dict[str, Any]) -> None:
    """Print the first-load table."""
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

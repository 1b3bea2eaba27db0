"""Stream throughput through `hwq up` as a user runs it: a device writing 115200 baud of output
without pause (a pseudo-terminal the benchmark writes lines to, each stamped with the time it
was written), followed by SSE observers of the API and Socket.IO clients of the gateway. The
delay of a line is when an observer received it less the stamp in it."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Any

from bench.common import check, percentile, print_table, script_main
from bench.up_process import UpProcess, running_up
from bench.watcher_processes import Watchers

DEVICE = "stream0"
BAUD = 115_200
# 8N1: ten bits a byte on the wire.
BYTES_PER_S = BAUD // 10
LINE_BYTES = 96
SSE_OBSERVERS = 10
SOCKET_IO_CLIENTS = 10
SECONDS = 30
TARGET_P99_MS = 50.0


class TimedSource:
    """A device on a pseudo-terminal that writes stamped lines at BYTES_PER_S."""

    def __init__(self, link: Path) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.ttyname(slave))
        self._slave = slave
        self.written = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        # What the host writes to the device is read and dropped (it sends nothing here).
        while True:
            try:
                if not os.read(self.master, 4096):
                    return
            except OSError:
                return

    def line(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\n")

    def run(self, seconds: float) -> None:
        """Write at BYTES_PER_S for `seconds`, a line each LINE_BYTES / BYTES_PER_S seconds."""
        period = LINE_BYTES / BYTES_PER_S
        started = time.monotonic()
        n = 0
        while (due := started + n * period) < started + seconds:
            time.sleep(max(0.0, due - time.monotonic()))
            head = f"S {time.time_ns()} {n} "
            data = (head + "x" * (LINE_BYTES - len(head) - 1) + "\n").encode()
            os.write(self.master, data)
            self.written += len(data)
            n += 1


def add_device(up: UpProcess, link: Path) -> None:
    reply = up.request("POST", "/devices", {"name": DEVICE, "address": str(link), "codec": "line"})
    if reply.status != 201:
        raise RuntimeError(f"device not registered: {reply.status} {reply.body}")
    up.wait_online(DEVICE)


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 8 if quick else SECONDS
    with tempfile.TemporaryDirectory(prefix="hwq-delay-") as home, running_up(
        Path(home) / "home", sims=0
    ) as up:  # fmt: skip
        source = TimedSource(up.home / "dev" / DEVICE)
        add_device(up, up.home / "dev" / DEVICE)
        sse = Watchers("sse", f"http://127.0.0.1:{up.api_port}", DEVICE, up.token, SSE_OBSERVERS)
        sio = Watchers("socket.io", up.gateway_url, DEVICE, up.token, SOCKET_IO_CLIENTS)
        try:
            sse.connected()
            sio.connected()
            for attempt in range(60):
                source.line(f"begin{attempt}")
                if sse.wait(f"begin{attempt}", 2) and sio.wait(f"begin{attempt}", 2):
                    break
            else:
                raise RuntimeError("the observers never received the device's output")
            start = f"begin{attempt}"
            print(f"writing {BYTES_PER_S} B/s for {seconds} s", file=sys.stderr)
            source.run(seconds)
            source.line("end")
            seen = sse.wait("end", 60) and sio.wait("end", 60)
            reports = {"sse": sse.report(start, "end"), "socket.io": sio.report(start, "end")}
        finally:
            sse.stop()
            sio.stop()
    results: dict[str, Any] = {"seconds": seconds, "bytes_per_s": BYTES_PER_S,
                               "written": source.written, "all_seen": seen}  # fmt: skip
    for kind, r in reports.items():
        delays = r["delays_ms"]
        results[kind] = {
            "observers": len(r["observers"]),
            "complete": sum(o["bytes"] == source.written for o in r["observers"]),
            "p50_ms": percentile(delays, 0.5),
            "p99_ms": percentile(delays, 0.99),
            "max_ms": max(delays),
            "lines": len(delays),
        }
    worst = max(results[k]["p99_ms"] for k in reports)
    missing = sum(results[k]["observers"] - results[k]["complete"] for k in reports)
    results["targets"] = [check("p99 delay ms", worst, "<=", TARGET_P99_MS),
                          check("observers missing bytes", missing, "<=", 0)]  # fmt: skip
    return results


def report(results: dict[str, Any]) -> None:
    rows = [("observers", "count", "complete", "p50", "p99", "max")]
    for kind in ("sse", "socket.io"):
        r = results[kind]
        rows.append((kind, str(r["observers"]), str(r["complete"]), f"{r['p50_ms']:.1f} ms",
                     f"{r['p99_ms']:.1f} ms", f"{r['max_ms']:.1f} ms"))  # fmt: skip
    print_table(f"stream delay, {results['bytes_per_s']} B/s for {results['seconds']} s "
                f"({results['written']} bytes)", rows)  # fmt: skip
    print_table("targets", [("target", "value", "met")] + [
        (f"{t['name']} {t['relation']} {t['target']}", f"{t['value']:.2f}", str(t["met"]))
        for t in results["targets"]
    ])  # fmt: skip


if __name__ == "__main__":
    script_main("stream_delay", __doc__, run, report)

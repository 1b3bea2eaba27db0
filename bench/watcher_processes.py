"""The benchmarks' side of bench.stream_watchers: start a watcher process, talk to it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

CONNECT_TIMEOUT_S = 300


class Watchers:
    """One bench.stream_watchers process (N observers of one kind)."""

    def __init__(
        self, kind: str, url: str, device: str, token: str, count: int, nice: int = 0
    ) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.stream_watchers", kind, "--url", url,
             "--device", device, "--count", str(count), "--nice", str(nice)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._say(token)

    def connected(self) -> None:
        """Block until every observer is connected."""
        line = self._line()
        if not line.startswith("connected"):
            raise RuntimeError(f"{self.kind} watchers did not connect: {line!r}")

    def wait(self, text: str, seconds: float) -> bool:
        """Whether every observer received the line `text` within `seconds`."""
        self._say(f"wait {text} {seconds}")
        return self._line() == "seen"

    def report(self, start: str, end: str) -> dict[str, Any]:
        self._say(f"report {start} {end}")
        return dict(json.loads(self._line()))

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} watchers ended (exit {self.process.poll()})")
        return line.strip()

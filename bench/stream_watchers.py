"""Observers of one device's live stream, in a process of their own: N SSE clients of the API
(asyncio, httpx) or N Socket.IO clients of the gateway (python-socketio, threads).

Driven over stdin, one command a line; answers one line on stdout:
  `wait TEXT SECONDS`  → `seen` once every observer received TEXT+"\\n", else `missing K`
  `report START END`   → JSON: per observer, the rx bytes between the last START line and the
                         first END line after it (length and sha256), and the delays (ms) of
                         the lines `S <ns since the epoch> …` they received
Prints `connected N` once all are connected; ends at EOF.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
import threading
import time
from typing import Any

# A line a timed source writes: `S <time.time_ns() when written> <padding>`.
TIMED_LINE_PREFIX = b"S "


class Received:
    """One observer's rx bytes and the delays of the timed lines in them."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.delays_ms: list[float] = []
        self._line_start = 0

    def take(self, chunk: bytes) -> None:
        now_ns = time.time_ns()
        self.rx += chunk
        while (end := self.rx.find(b"\n", self._line_start)) >= 0:
            line = bytes(self.rx[self._line_start : end])
            self._line_start = end + 1
            if line.startswith(TIMED_LINE_PREFIX):
                written_ns = int(line.split(b" ", 2)[1])
                self.delays_ms.append((now_ns - written_ns) / 1e6)

    def segment(self, start: bytes, end: bytes) -> bytes:
        begin = self.rx.rfind(start + b"\n")
        if begin < 0:
            return b""
        begin += len(start) + 1
        stop = self.rx.find(end + b"\n", begin)
        return bytes(self.rx[begin : stop if stop >= 0 else len(self.rx)])


def report(observers: list[Received], start: bytes, end: bytes) -> dict[str, Any]:
    items = []
    for observer in observers:
        segment = observer.segment(start, end)
        items.append({"bytes": len(segment), "sha256": hashlib.sha256(segment).hexdigest()})
    delays = [d for observer in observers for d in observer.delays_ms]
    return {"observers": items, "delays_ms": delays}


def serve_commands(observers: list[Received]) -> None:
    """Answer the commands on stdin until EOF."""
    for line in sys.stdin:
        word, _, rest = line.strip().partition(" ")
        if word == "wait":
            text, seconds = rest.rsplit(" ", 1)
            wanted = text.encode() + b"\n"
            deadline = time.monotonic() + float(seconds)
            missing = len(observers)
            while time.monotonic() < deadline:
                missing = sum(wanted not in o.rx for o in observers)
                if not missing:
                    break
                time.sleep(0.05)
            print("seen" if not missing else f"missing {missing}", flush=True)
        elif word == "report":
            start, end = rest.split(" ")
            print(json.dumps(report(observers, start.encode(), end.encode())), flush=True)


async def sse_observer(client: Any, url: str, token: str, received: Received,
                       connected: asyncio.Event) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"stream refused: {response.status_code}")
        connected.set()
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind == "rx":
                received.take(base64.b64decode(json.loads(line[5:])["data"]))
            elif not line:
                kind = ""


def run_sse(api: str, device: str, token: str, count: int) -> None:
    import httpx

    observers = [Received() for _ in range(count)]

    async def main() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(30.0, read=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            url = f"{api}/api/v1/devices/{device}/stream"
            events = [asyncio.Event() for _ in observers]
            tasks = [asyncio.create_task(sse_observer(client, url, token, o, e))
                     for o, e in zip(observers, events, strict=True)]  # fmt: skip
            await asyncio.gather(*(e.wait() for e in events))
            print(f"connected {count}", flush=True)
            await asyncio.to_thread(serve_commands, observers)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def run_socket_io(gateway: str, device: str, token: str, count: int) -> None:
    import socketio

    observers = [Received() for _ in range(count)]
    clients = []
    for observer in observers:
        client = socketio.Client(reconnection=False)
        lock = threading.Lock()

        def take(data: bytes, observer: Received = observer, lock: threading.Lock = lock) -> None:
            with lock:
                observer.take(bytes(data))

        client.on(device, take)
        client.connect(gateway, auth={"token": token}, transports=["websocket"], wait_timeout=60)
        clients.append(client)
    print(f"connected {count}", flush=True)
    serve_commands(observers)
    for client in clients:
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("sse", "socket.io"))
    parser.add_argument("--url", required=True, help="the API's (sse) or gateway's base URL")
    parser.add_argument("--device", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    token = sys.stdin.readline().strip()  # never on the command line, where `ps` shows it
    if args.kind == "sse":
        run_sse(args.url, args.device, token, args.count)
    else:
        run_socket_io(args.url, args.device, token, args.count)


if __name__ == "__main__":
    main()

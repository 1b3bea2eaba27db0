"""Observers of one device's live stream, in a process of their own: N SSE clients of the API
(asyncio, raw HTTP/1.0) or N Socket.IO clients of the gateway (python-socketio, threads).

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
import os
import sys
import threading
import time
from typing import Any

# A line a timed source writes: `S <time.time_ns() when written> <padding>`.
TIMED_LINE_PREFIX = b"S "


class Received:
    """One observer's rx bytes and the delays of the timed lines in them.

    While the benchmark measures, an observer only keeps what arrived and when (`arrived`):
    the parsing runs later (`catch_up`), so the load generator's own CPU stays small.
    """

    def __init__(self) -> None:
        self.rx = bytearray()
        self.delays_ms: list[float] = []
        self._line_start = 0
        self._pending: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()

    def arrived(self, chunk: bytes) -> None:
        """Keep a chunk as it came, with the time."""
        with self._lock:
            self._pending.append((time.time_ns(), chunk))

    def catch_up(self) -> None:
        """Parse what arrived since the last call."""
        with self._lock:
            pending, self._pending = self._pending, []
        for at_ns, chunk in pending:
            self.parse(at_ns, chunk)

    def parse(self, at_ns: int, chunk: bytes) -> None:
        """The rx bytes of a chunk: a Socket.IO client receives them as they are."""
        self.take(at_ns, chunk)

    def take(self, at_ns: int, chunk: bytes) -> None:
        self.rx += chunk
        while (end := self.rx.find(b"\n", self._line_start)) >= 0:
            line = bytes(self.rx[self._line_start : end])
            self._line_start = end + 1
            if line.startswith(TIMED_LINE_PREFIX):
                written_ns = int(line.split(b" ", 2)[1])
                self.delays_ms.append((at_ns - written_ns) / 1e6)

    def segment(self, start: bytes, end: bytes) -> bytes:
        begin = self.rx.rfind(start + b"\n")
        if begin < 0:
            return b""
        begin += len(start) + 1
        stop = self.rx.find(end + b"\n", begin)
        return bytes(self.rx[begin : stop if stop >= 0 else len(self.rx)])


class SseReceived(Received):
    """An SSE observer's HTTP/1.0 response (no chunked framing): events parsed from it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = bytearray()
        self._headers_done = False

    def parse(self, at_ns: int, chunk: bytes) -> None:
        self.body += chunk
        if not self._headers_done:
            end = self.body.find(b"\r\n\r\n")
            if end < 0:
                return
            del self.body[: end + 4]
            self._headers_done = True
        while (end := self.body.find(b"\n\n")) >= 0:
            event = bytes(self.body[:end])
            del self.body[: end + 2]
            if b"\nevent: rx\n" in b"\n" + event + b"\n":
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        self.take(at_ns, base64.b64decode(json.loads(line[5:])["data"]))


def report(observers: list[Received], start: bytes, end: bytes) -> dict[str, Any]:
    items = []
    for observer in observers:
        observer.catch_up()
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
                for o in observers:
                    o.catch_up()
                missing = sum(wanted not in o.rx for o in observers)
                if not missing:
                    break
                time.sleep(0.05)
            print("seen" if not missing else f"missing {missing}", flush=True)
        elif word == "report":
            start, end = rest.split(" ")
            print(json.dumps(report(observers, start.encode(), end.encode())), flush=True)


async def sse_observer(host: str, port: int, path: str, token: str, received: Received,
                       connected: asyncio.Event) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
                 f"Authorization: Bearer {token}\r\n\r\n".encode())  # fmt: skip
    first = await reader.read(65536)
    if not first.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        raise RuntimeError(f"stream refused: {first[:200]!r}")
    received.arrived(first)
    connected.set()
    while chunk := await reader.read(65536):
        received.arrived(chunk)


def run_sse(api: str, device: str, token: str, count: int) -> None:
    observers: list[Received] = [SseReceived() for _ in range(count)]
    host, port = api.removeprefix("http://").rsplit(":", 1)
    path = f"/api/v1/devices/{device}/stream"

    async def main() -> None:
        events = [asyncio.Event() for _ in observers]
        tasks = [asyncio.create_task(sse_observer(host, int(port), path, token, o, e))
                 for o, e in zip(observers, events, strict=True)]  # fmt: skip
        await asyncio.gather(*(e.wait() for e in events))
        print(f"connected {count}", flush=True)
        await asyncio.to_thread(serve_commands, observers)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def run_socket_io(gateway: str, device: str, token: str, count: int) -> None:
    from bench.ordered_socketio import OrderedClient

    observers = [Received() for _ in range(count)]
    clients = []
    for observer in observers:
        client = OrderedClient(reconnection=False)
        client.on(device, observer.arrived)
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
    parser.add_argument("--nice", type=int, default=0, help="run at this niceness")
    args = parser.parse_args()
    os.nice(args.nice)
    token = sys.stdin.readline().strip()  # never on the command line, where `ps` shows it
    if args.kind == "sse":
        run_sse(args.url, args.device, token, args.count)
    else:
        run_socket_io(args.url, args.device, token, args.count)


if __name__ == "__main__":
    main()

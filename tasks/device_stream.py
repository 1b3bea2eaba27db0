"""A device's live stream in Redis: what it sent (rx), what it was sent (tx), its presence and
its commands' states, newest last, capped.

Device workers write it (`StreamAppender`, in batches from a thread of its own, so neither the
port's reader nor the command thread waits on Redis); the API's SSE route, the gateway and
the console read it (`stream_event`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from tasks.command_record import utc_now_iso
from tasks.redis_replies import Fields, text

log = logging.getLogger("hwq.stream")

# Entries kept per device, approximately (Redis trims whole nodes): enough to resume a watch
# after a dropped connection, small enough that a chatty device costs a bounded few MB.
STREAM_MAXLEN = 10_000
KINDS = ("rx", "tx", "presence", "command")
# Entries waiting for Redis, at most; past it the oldest are dropped (Redis away for long).
MAX_PENDING_ENTRIES = 10_000
# After Redis refused a batch, wait this long before writing the next one.
RETRY_PAUSE_S = 1.0
# While a command runs, its entries wait for its end so they go out in one batch, but no
# longer than this: a command still waiting for its reply shows its tx within it.
HOLD_MAX_S = 0.02


def stream_key(prefix: str, device: str) -> str:
    """The key of one device's live stream."""
    return f"{prefix}:stream:{device}"


@dataclass(frozen=True)
class StreamEntry:
    """One entry to append: its kind, its bytes, the command it belongs to, and when."""

    device: str
    kind: str
    data: bytes
    command_id: str = ""
    at: str = ""

    def fields(self) -> dict[FieldT, EncodableT]:
        """The entry's Redis fields (DESIGN §9)."""
        return {
            "kind": self.kind,
            "at": self.at or utc_now_iso(),
            "data": self.data,
            "command_id": self.command_id,
        }


def presence_entry(device: str, presence: str) -> StreamEntry:
    """An entry saying the device's presence changed."""
    return StreamEntry(device, "presence", json.dumps({"presence": presence}).encode())


def command_entry(device: str, command_id: str, state: str) -> StreamEntry:
    """An entry saying one of the device's commands reached a state."""
    data = json.dumps({"id": command_id, "state": state}).encode()
    return StreamEntry(device, "command", data, command_id)


def append_now(client: redis.Redis, prefix: str, entry: StreamEntry) -> None:
    """Append one entry at once, on the caller's thread."""
    client.xadd(
        stream_key(prefix, entry.device), entry.fields(), maxlen=STREAM_MAXLEN, approximate=True
    )


class StreamAppender:
    """Appends entries to device streams in order, in one pipeline per batch, from a thread.

    `append` only queues: what arrives while a batch is being written goes in the next one, so
    a burst of chunks costs a round trip or two, and the callers never wait on Redis. While
    Redis is away the oldest entries beyond MAX_PENDING_ENTRIES are dropped.

    While `holding()`, entries wait (at most `hold_max_s`) for the hold to end: a command's
    dispatched, tx, rx and final entries then cost one round trip after its outcome is
    recorded, instead of waking this thread to write on the command's way.
    """

    def __init__(self, client: redis.Redis, prefix: str, hold_max_s: float = HOLD_MAX_S) -> None:
        self.client = client
        self.prefix = prefix
        self.hold_max_s = hold_max_s
        self._pending: deque[StreamEntry] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._dropped = 0
        # True while a batch taken from the queue is being written.
        self._busy = False
        self._held = False
        # When the oldest entry queued under the current hold was queued.
        self._held_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="hwq-stream", daemon=True)
        self._thread.start()

    def append(self, entry: StreamEntry) -> None:
        """Queue an entry; it reaches Redis after those queued before it."""
        if not entry.at:
            entry = StreamEntry(entry.device, entry.kind, entry.data, entry.command_id,
                                utc_now_iso())  # fmt: skip
        with self._wake:
            if len(self._pending) >= MAX_PENDING_ENTRIES:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append(entry)
            if not self._held:
                self._wake.notify()
            elif self._held_since is None:
                # The first entry of a hold starts its clock, on the writer's side too.
                self._held_since = time.monotonic()
                self._wake.notify()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold what is appended meanwhile (`hold_max_s` at most); write it when the block ends."""
        with self._wake:
            self._held = True
            self._held_since = time.monotonic() if self._pending else None
        try:
            yield
        finally:
            with self._wake:
                self._held, self._held_since = False, None
                if self._pending:
                    self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued entry has been written (or dropped); False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._pending and not self._busy, timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most timeout_s), then stop the thread."""
        self.flush(timeout_s)
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:
                self._busy = False
                self._wake.notify_all()
                self._wake.wait_for(self._batch_due)
                if not self._pending:
                    return
                batch = list(self._pending)
                self._pending.clear()
                # Entries queued from here on, under the same hold, start a clock of their own.
                self._held_since = None
                self._busy = True
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("stream entries dropped: Redis unreachable",
                            extra={"device": batch[0].device, "dropped": dropped})  # fmt: skip
            self._write(batch)

    def _batch_due(self) -> bool:
        """Whether the queued entries are to be written now (called with the lock held)."""
        while self._pending and self._held and not self._closing:
            if self._held_since is None:
                self._held_since = time.monotonic()
            remaining = self._held_since + self.hold_max_s - time.monotonic()
            if remaining <= 0:
                return True
            self._wake.wait(remaining)
        return bool(self._pending) or self._closing

    def _write(self, batch: list[StreamEntry]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for entry in batch:
            pipe.xadd(stream_key(self.prefix, entry.device), entry.fields(),
                      maxlen=STREAM_MAXLEN, approximate=True)  # fmt: skip
        try:
            pipe.execute()
        except redis.RedisError as e:
            log.warning("stream entries not written", extra={"device": batch[0].device,
                                                             "entries": len(batch),
                                                             "error": str(e)})  # fmt: skip
            with self._wake:
                self._wake.wait(RETRY_PAUSE_S)


def stream_event(fields: Fields) -> tuple[str, dict[str, Any]]:
    """An entry as an SSE event: its kind, and its JSON data (DESIGN §9)."""
    raw = {text(k): v for k, v in fields.items()}
    data = raw.get("data", b"")
    chunk = data if isinstance(data, bytes) else data.encode()
    kind = text(raw.get("kind", b"rx"))
    event: dict[str, Any] = {
        "at": text(raw.get("at", b"")),
        "data": base64.b64encode(chunk).decode("ascii"),
    }
    with contextlib.suppress(UnicodeDecodeError):
        event["text"] = chunk.decode("utf-8")
    command_id = text(raw.get("command_id", b""))
    if command_id:
        event["command_id"] = command_id
    if kind in ("presence", "command"):
        try:
            decoded = json.loads(chunk)
        except (ValueError, binascii.Error):
            decoded = None
        if isinstance(decoded, dict):
            event.update({k: v for k, v in decoded.items() if k not in event})
    return kind, event

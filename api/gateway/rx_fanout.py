"""The rx channel: each chunk a device sent, to every client watching it, as an event named
after the device carrying the bytes (the ancestor sent Buffers).

One reader per device, shared by all its watchers through a Socket.IO room: it starts with the
first watcher and ends after the last one leaves. It follows the device's live stream
`P:stream:<name>` (written beside the device, DESIGN §9) with XREAD BLOCK, from the entries
that arrive after it started.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
import socketio

log = logging.getLogger("hwq.gateway")

# How long one XREAD waits for news; a reader whose watchers all left ends within this.
READ_BLOCK_MS = 1000
# Entries taken per XREAD; a chatty device is read in batches, not one round trip each.
READ_BATCH = 200
# Pause after Redis fails before the reader tries again from where it was.
RETRY_PAUSE_S = 1.0
RX_KIND = b"rx"
# What the device sends between two emits goes out as one chunk (a serial line has no chunk
# boundaries to keep), so that a reader's emits cost its watchers at most EMITS_PER_S messages
# a second in all, and come at most MAX_EMIT_INTERVAL_S apart (the SSE feed's rule,
# api/stream_feed.py).
EMITS_PER_S = 2_000
MAX_EMIT_INTERVAL_S = 0.25


def rx_room(device: str) -> str:
    """The room of a device's watchers."""
    return f"rx:{device}"


class RxFanout:
    """Which client watches which device, and the readers that serve them."""

    def __init__(self, sio: socketio.AsyncServer, client: aioredis.Redis, prefix: str) -> None:
        self.sio = sio
        self.redis = client
        self.prefix = prefix
        self.watchers: dict[str, set[str]] = {}
        self.readers: dict[str, asyncio.Task[None]] = {}

    def stream_key(self, device: str) -> str:
        """The device's live stream (shared contract: `P:stream:<name>`)."""
        return f"{self.prefix}:stream:{device}"

    def watched_by(self, sid: str) -> set[str]:
        """The devices a client watches now."""
        return {device for device, sids in self.watchers.items() if sid in sids}

    async def watch(self, sid: str, devices: set[str]) -> None:
        """Make `devices` exactly what the client watches, starting readers as needed."""
        current = self.watched_by(sid)
        for device in current - devices:
            self._leave(sid, device)
            await self.sio.leave_room(sid, rx_room(device))
        for device in sorted(devices - current):
            self.watchers.setdefault(device, set()).add(sid)
            await self.sio.enter_room(sid, rx_room(device))
            reader = self.readers.get(device)
            if reader is None or reader.done():
                self.readers[device] = asyncio.create_task(self._follow(device))

    def forget(self, sid: str) -> None:
        """A client left: its readers end once no one else watches their device."""
        for device in self.watched_by(sid):
            self._leave(sid, device)

    def _leave(self, sid: str, device: str) -> None:
        sids = self.watchers.get(device)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.watchers[device]

    async def stop(self) -> None:
        """End every reader (the server is stopping)."""
        readers = list(self.readers.values())
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    async def _follow(self, device: str) -> None:
        key = self.stream_key(device)
        context = {"device": device}
        log.info("rx reader started", extra=context)
        last: str | bytes | None = None
        loop = asyncio.get_running_loop()
        next_emit_at = 0.0
        try:
            while self.watchers.get(device):
                if (pause := next_emit_at - loop.time()) > 0:
                    await asyncio.sleep(pause)
                try:
                    if last is None:
                        last = await self._newest_id(key)
                    replies: Any = await self.redis.xread(
                        {key: last}, count=READ_BATCH, block=READ_BLOCK_MS
                    )
                except aioredis.RedisError as e:
                    log.warning("rx reader cannot read", extra={**context, "error": str(e)})
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                chunks = []
                for _key, entries in replies or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        if fields.get(b"kind") == RX_KIND:
                            chunks.append(bytes(fields.get(b"data", b"")))
                if chunks:
                    await self.sio.emit(device, b"".join(chunks), room=rx_room(device))
                    watchers = len(self.watchers.get(device, ()))
                    next_emit_at = loop.time() + min(watchers / EMITS_PER_S, MAX_EMIT_INTERVAL_S)
        finally:
            log.info("rx reader stopped", extra=context)
            if self.readers.get(device) is asyncio.current_task():
                del self.readers[device]

    async def _newest_id(self, key: str) -> bytes | str:
        # From now on: a client sees what the device says while it watches, as the ancestor's did.
        newest: Any = await self.redis.xrevrange(key, count=1)
        return newest[0][0] if newest else b"0-0"

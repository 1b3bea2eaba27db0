"""One reader per watched device, shared by all of its SSE observers.

An observer reading the stream on its own would cost the API a Redis read and an encoding of
every entry per observer: with hundreds watching a busy device, the front door's loop spends
its time on them and the device's commands wait. Here one coroutine per device follows the
stream with XREAD BLOCK, encodes each entry as an SSE event once, and hands the encoded batch
to every observer's queue.

Joining loses nothing and repeats nothing: an observer subscribes first (the feed then holds
the id it reads after), catches up from its own last id with plain reads until it has reached
the newest entry, and from the feed takes only entries after the last one it sent. An observer
that falls too far behind is ended; its client resumes with `Last-Event-ID` (DESIGN §9).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from tasks.redis_replies import entries_of_one_stream, text

log = logging.getLogger("hwq.api")

# Entries taken per read by a feed.
FEED_BATCH_ENTRIES = 500
# How often a feed hands out batches. Each batch costs a send per observer; a busy device's
# entries (a command's claim, bytes out, bytes back, end) come a few milliseconds apart, so
# handed out one by one to hundreds of observers they would keep the front door's loop from
# everything else. A feed waits between batches so that its observers get at most
# SENDS_PER_S sends a second in all (entries coming meanwhile go together in the next
# batch), and never more than MAX_BATCH_INTERVAL_S: ten observers get a batch at most every
# 5 ms, 500 every 250 ms. A send costs the loop some 20-50 µs, so a feed's sends take at
# most a tenth of a core whatever the audience.
SENDS_PER_S = 2_000
MAX_BATCH_INTERVAL_S = 0.25
# Batches an observer may have waiting; past it the observer is ended (a client that stopped
# reading must not make the API hold the device's whole output for it).
MAX_QUEUED_BATCHES = 2000

# An entry as the feed sends it: its id as (milliseconds, sequence), and its SSE event.
EncodedEntry = tuple[tuple[int, int], bytes]
Encode = Callable[[bytes | str, Any], bytes]


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream id as something that sorts as Redis orders them."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Batch:
    """Entries read together, each encoded once for every observer."""

    entries: list[EncodedEntry]
    last_id: str

    def after(self, sent: tuple[int, int]) -> bytes:
        """The events of the entries after `sent`."""
        if self.entries and self.entries[0][0] > sent:
            return b"".join(event for _, event in self.entries)
        return b"".join(event for order, event in self.entries if order > sent)


def batch_interval_s(observers: int) -> float:
    """The least time between two batches of a feed with this many observers."""
    return min(observers / SENDS_PER_S, MAX_BATCH_INTERVAL_S)


class FeedEnded(Exception):
    """The feed stopped (Redis failed) or the observer fell too far behind."""


class Subscription:
    """One observer's place on a device's feed."""

    def __init__(self, feed: DeviceFeed) -> None:
        self.feed = feed
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue()

    def offer(self, batch: Batch | None) -> None:
        if batch is not None and self.queue.qsize() >= MAX_QUEUED_BATCHES:
            batch = None
        self.queue.put_nowait(batch)

    async def next_batch(self, timeout_s: float) -> Batch | None:
        """The next batch, or None when none came within timeout_s. FeedEnded when ended."""
        if self.queue.empty():
            # asyncio.timeout rather than wait_for: no task made per wait, on the hot path.
            try:
                async with asyncio.timeout(timeout_s):
                    batch = await self.queue.get()
            except TimeoutError:
                return None
        else:
            batch = self.queue.get_nowait()
        if batch is None:
            raise FeedEnded
        return batch

    def close(self) -> None:
        self.feed.leave(self)


class DeviceFeed:
    """The shared reader of one device's stream."""

    def __init__(self, feeds: StreamFeeds, key: str, start_id: str) -> None:
        self.feeds = feeds
        self.key = key
        self.last_id = start_id
        self.subscribers: set[Subscription] = set()
        self.task: asyncio.Task[None] | None = None

    def leave(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)

    async def run(self) -> None:
        client, encode = self.feeds.redis, self.feeds.encode
        loop = asyncio.get_running_loop()
        next_batch_at = 0.0
        try:
            while self.subscribers:
                if (pause := next_batch_at - loop.time()) > 0:
                    await asyncio.sleep(pause)
                try:
                    reply = await client.xread(
                        {self.key: self.last_id}, count=FEED_BATCH_ENTRIES,
                        block=self.feeds.block_ms,
                    )  # fmt: skip
                except redis.RedisError as e:
                    log.warning("stream feed ended: Redis unreachable",
                                extra={"stream": self.key, "error": str(e)})  # fmt: skip
                    for subscription in list(self.subscribers):
                        subscription.offer(None)
                    return
                entries = entries_of_one_stream(reply)
                if not entries:
                    continue
                self.last_id = text(entries[-1][0])
                batch = Batch(
                    [(entry_order(text(i)), encode(i, fields)) for i, fields in entries],
                    self.last_id,
                )
                for subscription in list(self.subscribers):
                    subscription.offer(batch)
                next_batch_at = loop.time() + batch_interval_s(len(self.subscribers))
        finally:
            self.feeds.ended(self)


class StreamFeeds:
    """The feeds of every watched device in one API process."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        encode: Encode,
        block_s: float,
        newest_id: Callable[[str], Awaitable[str]],
    ) -> None:
        self.redis = client
        self.encode = encode
        self.block_ms = max(1, int(block_s * 1000))
        self._newest_id = newest_id
        self.feeds: dict[str, DeviceFeed] = {}

    async def subscribe(self, key: str) -> Subscription:
        """A place on the device's feed; entries after the newest one now reach it."""
        feed = self.feeds.get(key)
        if feed is None:
            feed = DeviceFeed(self, key, await self._newest_id(key))
            # Another observer may have started it while this one asked Redis.
            feed = self.feeds.setdefault(key, feed)
        subscription = Subscription(feed)
        feed.subscribers.add(subscription)
        if feed.task is None:
            feed.task = asyncio.create_task(feed.run())
        return subscription

    def ended(self, feed: DeviceFeed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]
        # Observers that joined while it was ending start a new feed with their next wait.
        for subscription in list(feed.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                subscription.offer(None)

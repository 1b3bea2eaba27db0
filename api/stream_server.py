"""Serving a device's live stream as Server-Sent Events from the front door (DESIGN §9).

Each observer is a coroutine: it catches up from its `Last-Event-ID` with reads of its own, then
takes the device's shared feed (`api/stream_feed.py`: one XREAD BLOCK per device on
redis.asyncio, each entry encoded once), holding no thread and no Redis connection of its own.
Observers are counted like held waits: past HWQ_MAX_STREAMS in all the API answers 503, past
HWQ_MAX_STREAMS_PER_TOKEN 429.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import redis
import redis.asyncio
from pydantic import ValidationError

from api.auth import bearer_token, check_role
from api.held_waits import ClientGone, HeldWaits, Receive, unless_client_leaves
from api.inputs import field_errors
from api.stream_feed import FeedEnded, StreamFeeds, Subscription, entry_order
from api.streams import ENTRY_ID_PATTERN, EVENT_STREAM_MIME, StreamQuery
from tasks.auth import Principal
from tasks.command_wait import longest_block_s
from tasks.device_stream import stream_event, stream_key
from tasks.errors import NotFound, ValidationFailed
from tasks.redis_replies import entries_of_one_stream, text

log = logging.getLogger("hwq.api")

Send = Callable[[dict[str, Any]], Awaitable[None]]
# Given the request's token, the principal it names (Unauthorized if none).
Authenticate = Callable[[str], Awaitable[Principal]]

# A comment line this often keeps proxies and idle-connection timers from closing a quiet
# stream, and shows the client the connection still works.
KEEPALIVE_S = 15.0
# Entries sent per read; a client far behind catches up in batches of this many.
BATCH_ENTRIES = 500
# What a browser's EventSource waits before it reconnects after a drop, in milliseconds.
RECONNECT_MS = 2000
_ENTRY_ID = re.compile(ENTRY_ID_PATTERN)
_HEADERS = [
    (b"content-type", f"{EVENT_STREAM_MIME}; charset=utf-8".encode()),
    (b"cache-control", b"no-cache"),
    # nginx and its kin would otherwise hold events back to fill a buffer.
    (b"x-accel-buffering", b"no"),
]


def sse_event(entry_id: bytes | str, fields: Mapping[Any, Any]) -> bytes:
    """One stream entry as an SSE event: `id`, `event` (its kind) and one line of JSON."""
    kind, data = stream_event(fields)
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {text(entry_id)}\nevent: {kind}\ndata: {payload}\n\n".encode()


class StreamServer:
    """Serves `GET /devices/{name}/stream` for the front door."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        held: HeldWaits,
        config_key: Callable[[str], str],
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.held = held
        self._config_key = config_key
        self._block_s = longest_block_s(client)
        self.feeds = StreamFeeds(client, sse_event, self._block_s, self._newest_id)

    async def serve(
        self,
        device: str,
        headers: Mapping[str, str],
        query_string: bytes,
        authenticate: Authenticate,
        receive: Receive,
        send: Send,
    ) -> None:
        """Check the request, then send events until the client leaves (or, with
        `follow=false`, until the stream's end). Errors before the first byte are raised."""
        query = _query(query_string)
        token = query.token or bearer_token(headers.get("authorization", ""))
        check_role(await authenticate(token), "viewer")
        if not await self.redis.exists(self._config_key(device)):
            raise NotFound(f"no device named {device!r}")
        key = stream_key(self.prefix, device)
        # A bad header is refused even beside a query that would win over it.
        header_id = _last_event_id(headers)
        last_id = query.last_event_id or header_id or await self._newest_id(key)
        with self.held.hold(token):
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": f"retry: {RECONNECT_MS}\n\n".encode(),
                        "more_body": True})  # fmt: skip
            try:
                await unless_client_leaves(receive, self._events(key, last_id, query.follow, send))
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except ClientGone:
                raise
            except Exception as e:
                # The answer has begun: nothing but its end can be sent. A client that went
                # away between two events shows up here, as the server's send failing.
                log.info("stream ended early", extra={"stream": key, "error": repr(e)})

    async def _newest_id(self, key: str) -> str:
        """The newest entry's id: a stream from now on misses nothing added meanwhile."""
        newest: Any = await self.redis.xrevrange(key, count=1)
        return text(newest[0][0]) if newest else "0-0"

    async def _events(self, key: str, last_id: str, follow: bool, send: Send) -> None:
        subscription = await self.feeds.subscribe(key) if follow else None
        try:
            # What is in the stream already, by reads of its own: until a read comes back
            # short, which (made after subscribing) reached where the feed takes over.
            while True:
                try:
                    reply = await self.redis.xread({key: last_id}, count=BATCH_ENTRIES)
                except redis.RedisError as e:
                    # Mid-stream there is no status to answer with: end it, and the client
                    # resumes from its last event once Redis is back.
                    log.warning("stream ended: Redis unreachable",
                                extra={"stream": key, "error": str(e)})  # fmt: skip
                    return
                entries = entries_of_one_stream(reply)
                if entries:
                    last_id = text(entries[-1][0])
                    body = b"".join(sse_event(entry_id, fields) for entry_id, fields in entries)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if len(entries) < BATCH_ENTRIES:
                    break
            if subscription is not None:
                await self._follow(subscription, last_id, send)
        finally:
            if subscription is not None:
                subscription.close()

    async def _follow(self, subscription: Subscription, last_id: str, send: Send) -> None:
        sent = entry_order(last_id)
        while True:
            try:
                batch = await subscription.next_batch(KEEPALIVE_S)
            except FeedEnded:
                log.info("stream ended: its feed ended or the client fell behind",
                         extra={"stream": subscription.feed.key})  # fmt: skip
                return
            if batch is None:
                await send({"type": "http.response.body", "body": b": keep-alive\n\n",
                            "more_body": True})  # fmt: skip
                continue
            body = batch.after(sent)
            if body:
                sent = max(sent, entry_order(batch.last_id))
                await send({"type": "http.response.body", "body": body, "more_body": True})


def _query(query_string: bytes) -> StreamQuery:
    values: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        values.setdefault(name, value)
    try:
        return StreamQuery.model_validate(values)
    except ValidationError as e:
        errors = field_errors(e, values)
        raise ValidationFailed("invalid query: " + ", ".join(str(x["field"]) for x in errors),
                               errors=errors) from None  # fmt: skip


def _last_event_id(headers: Mapping[str, str]) -> str | None:
    value = headers.get("last-event-id", "").strip()
    if not value:
        return None
    if not _ENTRY_ID.match(value):
        message = "must be an event id as the stream sent it, such as 1732900000000-0"
        raise ValidationFailed(f"Last-Event-ID {message}",
                               errors=[{"field": "Last-Event-ID", "message": message}])  # fmt: skip
    return value

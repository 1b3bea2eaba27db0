"""The API's front door: an ASGI app under granian that gives a request a thread only once it
is whole and allowed, and holds long-polls with no thread at all.

- A declared body over HWQ_MAX_BODY_BYTES gets 413 before a byte of it is read; a chunked
  one as soon as it passes the limit.
- The body of a route that needs a token is read only once the token is known (else 401),
  and must arrive within HWQ_BODY_TIMEOUT_S (else 408).
- `GET /commands/{id}?wait=S` waits on redis.asyncio: a coroutine and a Redis connection
  each, up to HWQ_MAX_WAITS in all and HWQ_MAX_WAITS_PER_TOKEN per token (503 and 429 with
  Retry-After beyond), ended early if the client leaves.
- `POST /devices/{name}/commands[?wait=S]` is checked and submitted here (`submit_front.py`),
  with a thread only for the service's insert and create; its wait is held like the one above.
- `GET /devices/{name}/stream` (Server-Sent Events) is served by `stream_server.py` the same
  way: a coroutine blocked in XREAD per observer, capped by HWQ_MAX_STREAMS(_PER_TOKEN).
- Everything else runs the Flask app, unchanged, on a pool of HWQ_API_THREADS threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import redis.asyncio
from flask import Flask, Response
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestTimeout

from api.auth import PRINCIPAL_ENVIRON_KEY, ROLE_ATTRIBUTE, bearer_token, check_role
from api.context import EXTENSION_KEY
from api.held_waits import ClientGone, HeldWaits, WaitRefused, unless_client_leaves
from api.inputs import too_large
from api.poll_front import POLL_ENDPOINT, hold_poll
from api.problems import problem_for
from api.request_log import STARTED_ENVIRON_KEY, log_request
from api.schemas import CommandWaitQuery
from api.stream_server import StreamServer
from api.submit_front import SUBMIT_ENDPOINT, submit, taken_query
from api.wsgi_bridge import WsgiBridge, wsgi_environ
from config import Settings
from tasks.auth import Principal
from tasks.command_record import public_view
from tasks.connections import async_redis_client
from tasks.lifecycle import is_settled_for_wait
from tasks.service import HwqService
from tasks.token_access import Generation

log = logging.getLogger("hwq.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# The view whose `?wait` the front door holds itself.
WAIT_ENDPOINT = "commands.get_command"
# The view the front door serves itself, as a stream.
STREAM_ENDPOINT = "streams.stream_device"
# Redis connections beyond one per held wait, for the round that renews a block.
WAIT_POOL_HEADROOM = 16


@dataclass
class Incoming:
    """What the front door knows of a request before its body."""

    scope: Scope
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    token: str = ""
    log_fields: dict[str, object] = field(default_factory=dict)
    # Set when the principal came from the token cache alone: the generation it was valid
    # at, which the submission's create checks (a 1-tuple, as None is a generation too).
    unchecked_generation: tuple[Generation] | None = None

    def __post_init__(self) -> None:
        self.method: str = self.scope["method"]
        self.path: str = self.scope["path"]
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}

    @property
    def content_length(self) -> int | None:
        """The declared body length, if any (granian refuses a malformed one itself)."""
        raw = self.headers.get("content-length")
        return int(raw) if raw and raw.isdigit() else None

    @property
    def has_body(self) -> bool:
        """Whether a body follows the head."""
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return chunked or bool(self.content_length)


class Front:
    """The ASGI app granian serves: gates, long-polls, and the Flask app on a bounded pool."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.service: HwqService = app.extensions[EXTENSION_KEY]
        self.bridge = WsgiBridge(app, settings.api_threads)
        self.waits = HeldWaits(settings.max_waits, settings.max_waits_per_token)
        self.redis: redis.asyncio.Redis = async_redis_client(
            settings, settings.max_waits + WAIT_POOL_HEADROOM
        )
        self.streams = StreamServer(
            async_redis_client(settings, settings.max_streams + WAIT_POOL_HEADROOM),
            settings.key_prefix,
            HeldWaits(settings.max_streams, settings.max_streams_per_token),
            self.service.live.device_config_key,
        )
        self._routes = app.url_map.bind("localhost")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets, and granian's ASGINL interface sends no lifespan
        request = Incoming(scope)
        try:
            await self._handle(request, receive, send)
        except ClientGone:
            log_request(request.method, request.path, 499, request.started, request.principal,
                        {**request.log_fields, "detail": "client left"})  # fmt: skip
        except WaitRefused as e:
            headers = {"Retry-After": str(e.retry_after_s)}
            await self._refuse(request, send, e.problem, close=False, headers=headers)
        except Exception as e:  # every answer the front gives itself is a problem
            # An unread body must not be taken for the next request on the connection.
            await self._refuse(request, send, e, close=request.has_body)

    async def _handle(self, request: Incoming, receive: Receive, send: Send) -> None:
        limit = self.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise too_large(limit)
        endpoint, args, role = self._route(request.method, request.path)
        if endpoint == POLL_ENDPOINT and request.method == "GET":
            await hold_poll(self, request, args["name"], receive, send)
            return
        if endpoint == WAIT_ENDPOINT and request.method == "GET":
            wait_s = self._wait_s(request.scope["query_string"])
            if wait_s:
                await self._hold_wait(request, args["command_id"], wait_s, receive, send)
                return
        if endpoint == STREAM_ENDPOINT and request.method == "GET":
            await self._stream(request, args["name"], receive, send)
            return
        taken, wait_s = False, None
        if endpoint == SUBMIT_ENDPOINT and role is not None and request.has_body:
            taken, wait_s = taken_query(request.scope["query_string"])
        body, unread = b"", False
        if request.has_body:
            if endpoint is None:
                # A 404 or 405 needs no body: it is never read.
                unread = True
            else:
                if taken:
                    self._authenticate_from_cache(request)
                if role is not None and request.principal is None:
                    await self._authenticate(request)
                body = await self._read_body(receive, limit)
        if taken:
            assert role is not None  # only a route with a role is taken
            await submit(self, request, args["name"], role, body, wait_s, receive, send)
            return
        await self._run_app(request, body, send, close=unread)

    def _route(self, method: str, path: str) -> tuple[str | None, dict[str, Any], str | None]:
        """The view a request reaches, its arguments and the role it needs; None if none."""
        try:
            endpoint, args = self._routes.match(path, method)
        except HTTPException:  # not found, method not allowed, or a redirect: Flask answers
            return None, {}, None
        role = getattr(self.app.view_functions[endpoint], ROLE_ATTRIBUTE, None)
        return str(endpoint), dict(args), role

    @staticmethod
    def _wait_s(query_string: bytes) -> float | None:
        """The `wait` of a query the view would accept, else None (and the view answers)."""
        values: dict[str, str] = {}
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            values.setdefault(key, value)
        try:
            query = CommandWaitQuery.model_validate({k: v for k, v in values.items() if v})
        except ValidationError:
            return None
        return query.wait or None

    async def _authenticate(self, request: Incoming, token: str | None = None) -> Principal:
        token = token or bearer_token(request.headers.get("authorization", ""))
        # A revocation moves the generation on; a cached token of an older one is looked up.
        generation = await self.redis.get(self.service.token_generation_key)
        principal = self.service.cached_principal(token, generation)
        if principal is None:
            principal = await self.bridge.run_blocking(self.service.authenticate, token)
        request.principal, request.token = principal, token
        return principal

    def _authenticate_from_cache(self, request: Incoming) -> None:
        """A submission's token from the cache alone, with no Redis round trip: the create
        checks, atomically, that no token was revoked since (api/submit_front.py). A token
        not cached is left to `_authenticate`."""
        token = bearer_token(request.headers.get("authorization", ""))
        cached = self.service.cached_as_last_read(token)
        if cached is not None:
            request.principal, request.token = cached[0], token
            request.unchecked_generation = (cached[1],)

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        """The whole body, at most `limit` bytes, within the body timeout."""
        timeout_s = self.settings.body_timeout_s
        body = bytearray()
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = await _within(receive(), remaining)
            except TimeoutError:
                raise RequestTimeout(f"The body did not arrive within {timeout_s:g} s.") from None
            if message["type"] == "http.disconnect":
                raise ClientGone
            body += message.get("body", b"")
            if len(body) > limit:
                raise too_large(limit)
            if not message.get("more_body"):
                return bytes(body)

    async def _hold_wait(
        self, request: Incoming, command_id: str, wait_s: float, receive: Receive, send: Send
    ) -> None:
        """A long-poll held on redis.asyncio; the view renders what the wait could not."""
        request.log_fields["command"] = command_id
        check_role(await self._authenticate(request), "viewer")
        expect_wake = self.service.accepted_recently(command_id)
        rounds = self.service.live.command_wait(
            command_id, wait_s, is_settled_for_wait, expect_wake, client=self.redis
        )
        with self.waits.hold(request.token):
            values = await unless_client_leaves(receive, rounds.run_async(self.redis))
        if values is None:
            # Not in Redis: the view reads the ledger, or answers 404, as without a wait.
            request.scope = {**request.scope, "query_string": _without_wait(request.scope)}
            await self._run_app(request, b"", send, close=request.has_body)
            return
        response = cast(Response, self.app.json.response(public_view(values)))
        # A body sent with a GET is never read; it must not be taken for the next request.
        await self._send_response(request, send, response, close=request.has_body)

    async def _settled_or_as_it_stands(
        self, request: Incoming, command: dict[str, Any], wait_s: float, receive: Receive
    ) -> dict[str, Any]:
        rounds = self.service.live.command_wait(
            command["id"],
            wait_s,
            is_settled_for_wait,
            self.service.accepted_recently(command["id"]),
            client=self.redis,
        )
        try:
            with self.waits.hold(request.token):
                values = await unless_client_leaves(receive, rounds.run_async(self.redis))
        except WaitRefused:
            # The command is accepted already: past a cap it is answered as it stands (202),
            # never refused, and the client waits with GET ?wait as it would after a 202.
            return command
        except redis.RedisError as e:
            # Likewise when Redis fails mid-wait: a problem here would read as "not accepted".
            log.warning("submission's wait cut short", extra={"command_id": command["id"],
                                                             "error": str(e)})  # fmt: skip
            return command
        return command if values is None else public_view(values)

    async def _stream(self, request: Incoming, device: str, receive: Receive, send: Send) -> None:
        """A device's live stream, until the client leaves."""
        request.log_fields["device"] = device

        async def authenticate(token: str) -> Principal:
            return await self._authenticate(request, token)

        await self.streams.serve(
            device, request.headers, request.scope["query_string"], authenticate, receive, send
        )
        log_request(request.method, request.path, 200, request.started, request.principal,
                    {**request.log_fields, "detail": "stream ended"})  # fmt: skip

    async def _run_app(self, request: Incoming, body: bytes, send: Send, close: bool) -> None:
        status, headers, content = await self.bridge.call(self._environ(request, body))
        await _send(send, status, headers, content, close)

    def _environ(self, request: Incoming, body: bytes) -> dict[str, Any]:
        environ: dict[str, Any] = {STARTED_ENVIRON_KEY: request.started}
        if request.principal is not None:
            environ[PRINCIPAL_ENVIRON_KEY] = request.principal
        return wsgi_environ(request.scope, body, environ)

    async def _refuse(
        self,
        request: Incoming,
        send: Send,
        error: Exception,
        *,
        close: bool,
        headers: dict[str, str] | None = None,
    ) -> None:
        with self.app.app_context():
            response = problem_for(error)
            if response is None:
                log.error("front door failed: %s", error, exc_info=error)
                response = problem_for(InternalServerError("The API failed to answer this."))
                assert response is not None
        response.headers.update(headers or {})
        await self._send_response(request, send, response, close=close)

    async def _send_response(
        self, request: Incoming, send: Send, response: Response, *, close: bool
    ) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        await _send(send, response.status_code, headers, response.get_data(), close)
        log_request(request.method, request.path, response.status_code, request.started,
                    request.principal, request.log_fields)  # fmt: skip


async def _send(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool
) -> None:
    if close:
        headers = [*headers, (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _within(awaitable: Awaitable[dict[str, Any]], seconds: float) -> dict[str, Any]:
    if seconds <= 0:
        raise TimeoutError
    return await asyncio.wait_for(awaitable, seconds)


def _without_wait(scope: Scope) -> bytes:
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "wait"]).encode("latin-1")


def create_front(settings: Settings | None = None) -> Front:
    """The front door around a new Flask app built from the environment's settings."""
    from api import create_app

    app = create_app()
    return Front(app, settings or app.config["HWQ_SETTINGS"])

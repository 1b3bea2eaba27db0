"""The ancestor's Socket.IO events, each answered through its acknowledgement as
`{ok: true, …}` or `{ok: false, error}` (DESIGN §8, §9).

Who may do what follows the API's roles: a viewer lists and watches, an operator sends, an
admin activates, deactivates and renames. The token is checked again on every event, with
the API's own code, so a revoked token stops working at once, even on an open connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qs

import redis
import socketio
from socketio import exceptions as sio_errors
from sqlalchemy.exc import SQLAlchemyError

from api.gateway import inputs
from api.gateway.host_ports import HostPorts
from api.gateway.rx_fanout import RxFanout
from tasks.auth import ROLE_RANK, Principal
from tasks.errors import Forbidden, HwqError, NotFound, Unauthorized
from tasks.service import HwqService

log = logging.getLogger("hwq.gateway")

T = TypeVar("T")
Handler = Callable[[str, object, Principal], Awaitable[dict[str, Any]]]

# How often the watched devices of every client are brought up to date with the registry, so
# a device activated elsewhere (the API, another gateway) reaches its watchers within this,
# and how soon a client whose token was revoked is disconnected.
WATCH_REFRESH_S = 2.0
# The longest one refresh round (revocations checked, rooms brought up to date) may take.
REFRESH_ROUND_LIMIT_S = 30.0
# How much longer than its timeout send-command waits for a frame command to settle: the
# command may wait its turn in the queue, and the worker needs a moment to report.
SETTLE_GRACE_S = 2.0


class GatewayEvents:
    """Registers the ancestor's events on a Socket.IO server and answers them."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        service: HwqService,
        host_ports: HostPorts,
        fanout: RxFanout,
        threads: int,
    ) -> None:
        self.sio = sio
        self.service = service
        self.host_ports = host_ports
        self.fanout = fanout
        # The service is synchronous (SQL, Redis); its calls run here, off the event loop.
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gateway")
        self.tokens: dict[str, str] = {}
        self._refresher: asyncio.Task[None] | None = None
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)
        events: dict[str, tuple[str, Handler]] = {
            "list-devices": ("viewer", self.list_devices),
            "list-connections": ("viewer", self.list_connections),
            "activate-connection": ("admin", self.activate_connection),
            "deactivate-connection": ("admin", self.deactivate_connection),
            "rename-reference": ("admin", self.rename_reference),
            "send-raw": ("operator", self.send_raw),
            "send-command": ("operator", self.send_command),
        }
        for event, (role, handler) in events.items():
            sio.on(event, partial(self._answer, event, role, handler))

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    # connection ------------------------------------------------------------------------
    async def connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        """Refuse a client without a valid token of at least the viewer role."""
        token = _token_of(environ, auth)
        if not token:
            raise sio_errors.ConnectionRefusedError("send a token: auth {token} or ?token=")
        try:
            principal = await self._call(self.service.authenticate, token)
        except Unauthorized as e:
            raise sio_errors.ConnectionRefusedError(str(e)) from None
        except (redis.RedisError, SQLAlchemyError) as e:
            log.warning("cannot check a token", extra={"error": str(e)})
            raise sio_errors.ConnectionRefusedError("tokens cannot be checked now; retry") from None
        if ROLE_RANK.get(principal.role, -1) < ROLE_RANK["viewer"]:
            raise sio_errors.ConnectionRefusedError(
                f"a {principal.role} token cannot use the gateway"
            )
        self.tokens[sid] = token
        log.info("gateway client connected", extra={"sid": sid, "user": principal.name})
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_watches())
        # The rx channel of every active connection, as the ancestor emitted (module docs).
        self.sio.start_background_task(self._watch_active, [sid])

    async def disconnect(self, sid: str, reason: object = None) -> None:
        """Forget the client; readers no one watches any more end."""
        self.tokens.pop(sid, None)
        self.fanout.forget(sid)

    async def _watch_active(self, sids: list[str]) -> None:
        try:
            devices = await self._call(self.service.list_devices)
        except (HwqError, redis.RedisError, SQLAlchemyError) as e:
            log.warning("cannot list devices to watch", extra={"error": str(e)})
            return
        active = {d["name"] for d in devices if d.get("active", True)}
        for sid in sids:
            if sid in self.tokens:
                await self.fanout.watch(sid, active)

    async def _refresh_watches(self) -> None:
        while self.tokens:
            await asyncio.sleep(WATCH_REFRESH_S)
            try:
                # Bounded: a round that hangs must not end every later one, or clients
                # connected earlier would never join the rooms of devices activated since.
                await asyncio.wait_for(self._refresh_once(), REFRESH_ROUND_LIMIT_S)
            except Exception:
                log.exception("refreshing the watched devices failed")

    async def _refresh_once(self) -> None:
        await self._drop_revoked()
        await self._watch_active(list(self.tokens))

    async def _drop_revoked(self) -> None:
        """Disconnect clients whose token was revoked: they stop receiving rx at once too."""
        for sid, token in list(self.tokens.items()):
            try:
                await self._call(self.service.authenticate, token)
            except Unauthorized:
                log.info("gateway client's token revoked; disconnecting", extra={"sid": sid})
                self.tokens.pop(sid, None)
                self.fanout.forget(sid)
                # In a task of its own: closing the client's connection may wait on the client,
                # and the refresh must go on meanwhile.
                self.sio.start_background_task(self.sio.disconnect, sid)
            except (redis.RedisError, SQLAlchemyError):
                return  # cannot tell now; the next round checks again

    # the answer ------------------------------------------------------------------------
    async def _answer(
        self, event: str, role: str, handler: Handler, sid: str, *args: Any
    ) -> dict[str, Any]:
        data = args[0] if args else None
        try:
            principal = await self._principal(sid)
            if ROLE_RANK.get(principal.role, -1) < ROLE_RANK[role]:
                raise Forbidden(f"{event} requires role {role}; the token's role is "
                                f"{principal.role}")  # fmt: skip
            return {"ok": True, **await handler(sid, data, principal)}
        except HwqError as e:
            if isinstance(e, Unauthorized):
                self.sio.start_background_task(self.sio.disconnect, sid)
            answer: dict[str, Any] = {"ok": False, "error": str(e), "status": e.status}
            errors = getattr(e, "errors", None)
            if errors:
                answer["errors"] = errors
            return answer
        except (redis.RedisError, SQLAlchemyError) as e:
            log.warning("gateway event met a store error", extra={"event": event, "error": str(e)})
            return {"ok": False, "error": f"{event}: Redis or the database cannot be reached; "
                    "try again", "status": 503}  # fmt: skip
        except Exception:
            log.exception("gateway event failed", extra={"event": event, "sid": sid})
            return {"ok": False, "error": f"{event} failed inside the gateway", "status": 500}

    async def _principal(self, sid: str) -> Principal:
        token = self.tokens.get(sid)
        if token is None:
            raise Unauthorized("this connection has no token")
        try:
            return await self._call(self.service.authenticate, token)
        except Unauthorized:
            raise Unauthorized(
                "the token is no longer valid; connect again with a valid one"
            ) from None

    # events ----------------------------------------------------------------------------
    async def list_devices(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """The serial ports of every host: per host, and as one list naming the host."""
        hosts = await self.host_ports.hosts()
        ports = [{**port, "host": host["name"]} for host in hosts for port in host["ports"]]
        return {"hosts": hosts, "ports": ports}

    async def list_connections(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """Every device, with whether its connection is active and its presence."""
        return {"connections": await self._call(self.service.list_devices)}

    async def activate_connection(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """Register the device if it is new (on the host that sees the address), then activate."""
        fields = inputs.fields_of(data, ("name", "address"))
        name = inputs.device_name(fields)
        address = inputs.address(fields)
        codec = inputs.optional_codec(fields)
        baudrate = inputs.optional_baudrate(fields)
        host = await self.host_ports.host_serving(address, self.service.settings.hostname)
        registered = await self._call(self._ensure_registered, name, address, host, codec, baudrate)
        device = await self._call(self.service.activate_device, name)
        await self._watch_active(list(self.tokens))
        return {"connection": device, "registered": registered}

    def _ensure_registered(
        self, name: str, address: str, host: str, codec: str | None, baudrate: int | None
    ) -> bool:
        """Register a new device, or point a known one at `address`; True if it is new."""
        try:
            current = self.service.get_device(name)
        except NotFound:
            spec: dict[str, Any] = {
                "name": name,
                "transport": "serial",
                "address": address,
                "codec": codec or "line",
                "options": {},
                "host": host,
            }
            if baudrate is not None:
                spec["baudrate"] = baudrate
            self.service.register_device(spec)
            return True
        changes: dict[str, Any] = {}
        if current["address"] != address:
            changes["address"] = address
        if codec is not None and current["codec"] != codec:
            changes["codec"] = codec
        if baudrate is not None and current["baudrate"] != baudrate:
            changes["baudrate"] = baudrate
        if changes:
            self.service.update_device(name, changes)
        return False

    async def deactivate_connection(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """Close the device's connection; its queued commands stay queued."""
        name = inputs.device_name(inputs.fields_of(data, ("name",)))
        device = await self._call(self.service.deactivate_device, name)
        await self._watch_active(list(self.tokens))
        return {"connection": device}

    async def rename_reference(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """Rename a device; refused (status 409) while it has commands queued or in flight."""
        fields = inputs.fields_of(data, ("old", "new"))
        old = inputs.device_name(fields, "old")
        new = inputs.device_name(fields, "new")
        device = await self._call(self._rename, old, new)
        await self._watch_active(list(self.tokens))
        return {"connection": device}

    def _rename(self, old: str, new: str) -> dict[str, Any]:
        # The service tells the host agent of both names: the old worker ends, the new starts.
        return self.service.update_device(old, {"name": new})

    async def send_raw(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """Queue the bytes as a raw command that expects nothing back; what the device says
        comes on its rx channel."""
        fields = inputs.fields_of(data, ("name", "payload"))
        name = inputs.device_name(fields)
        request = inputs.raw_submission(inputs.raw_payload(fields))
        command = await self._call(self.service.submit, name, who.name, request)
        return {"id": command["id"], "state": command["state"]}

    async def send_command(self, sid: str, data: object, who: Principal) -> dict[str, Any]:
        """Queue a standard-frame command; the answer carries its reply when it settles in time."""
        fields = inputs.fields_of(data, ("name", "command-id", "args"))
        name = inputs.device_name(fields)
        request = inputs.frame_submission(fields)
        command = await self._call(self.service.submit, name, who.name, request)
        settled = await self._call(
            self.service.wait_command, command["id"], request["timeout_s"] + SETTLE_GRACE_S
        )
        answer = {"id": command["id"], "state": settled["state"]}
        if settled.get("response") is not None:
            answer["response"] = settled["response"]
        if settled.get("error"):
            answer["command_error"] = settled["error"]
        return answer


def _token_of(environ: dict[str, Any], auth: object) -> str | None:
    """The client's token: `auth: {token}` first, else `?token=` in the query string."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str) and auth["token"]:
        return str(auth["token"])
    query = parse_qs(environ.get("QUERY_STRING", ""))
    values = query.get("token")
    return values[0] if values else None

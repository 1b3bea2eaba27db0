"""What the API does, independent of HTTP: devices, submission, reads, cancel, analysis."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from config import Settings
from tasks.analysis import check_analysis_request
from tasks.auth import Principal
from tasks.command_record import public_view, utc_now_iso
from tasks.connections import redis_client
from tasks.db import ledger, registry, tokens
from tasks.db.command_insert import CommandInsert
from tasks.db.engine import make_engine, make_sessions
from tasks.db.write_lock import writer_turn
from tasks.errors import (
    CommandStateError,
    Conflict,
    NotFound,
    QueueFull,
    Unauthorized,
    ValidationFailed,
)
from tasks.lifecycle import TERMINAL, State, is_settled_for_wait
from tasks.live_store import LiveStore
from tasks.recently_accepted import RecentlyAccepted

log = logging.getLogger("hwq.service")

# A token lookup is cached this long, so a busy client costs one SQL query per minute.
TOKEN_CACHE_TTL_S = 60.0


@functools.cache
def _version() -> str:
    # Read from the installed metadata once: that scan was half of a health check (0.35 ms).
    try:
        return version("hwq")
    except PackageNotFoundError:
        return "0+unknown"


class HwqService:
    """The operations behind every API route."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis_client(settings, max_connections=max(64, settings.api_threads * 2))
        self.live = LiveStore(self.redis, settings.key_prefix)
        self.engine = make_engine(settings.sqlalchemy_url)
        self.sessions = make_sessions(self.engine)
        self._insert_command = CommandInsert(self.engine)
        self._token_cache: dict[str, tuple[float, Principal]] = {}
        self._accepted = RecentlyAccepted()
        self._token_lock = threading.Lock()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A Core write transaction; on SQLite, writers of every process take turns."""
        with writer_turn(self.engine), self.engine.begin() as connection:
            yield connection

    # health and auth ----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Whether Redis and the database answer."""
        redis_ok = database_ok = True
        try:
            self.redis.ping()
        except redis.RedisError:
            redis_ok = False
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            database_ok = False
        return {
            "status": "ok" if redis_ok and database_ok else "degraded",
            "redis": "ok" if redis_ok else "down",
            "database": "ok" if database_ok else "down",
            "version": _version(),
        }

    def cached_principal(self, token: str) -> Principal | None:
        """The principal behind a token looked up in the last minute, without touching SQL."""
        with self._token_lock:
            cached = self._token_cache.get(token)
        return cached[1] if cached and cached[0] > time.monotonic() else None

    def authenticate(self, token: str) -> Principal:
        """The principal behind a bearer token."""
        now = time.monotonic()
        cached = self.cached_principal(token)
        if cached is not None:
            return cached
        with self._session() as session:
            principal = tokens.find_principal(session, token)
        if principal is None:
            raise Unauthorized("the bearer token is not valid")
        with self._token_lock:
            self._token_cache[token] = (now + TOKEN_CACHE_TTL_S, principal)
        return principal

    def create_token(self, role: str, name: str) -> str:
        """A new token for `name` with `role`."""
        with self._session() as session:
            return tokens.create_token(session, role, name)

    # devices ------------------------------------------------------------------------------
    def _device_view(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, **self.live.device_status(values["name"])}

    def _mirror(self, values: dict[str, Any]) -> None:
        self.live.put_device_config(values["name"], {k: values[k] for k in registry.WORKER_FIELDS})

    def list_devices(self) -> list[dict[str, Any]]:
        """Every device with its live state."""
        with self._session() as session:
            rows = [registry.device_values(r) for r in registry.list_devices(session)]
        return [self._device_view(values) for values in rows]

    def get_device(self, name: str) -> dict[str, Any]:
        """One device with its live state."""
        with self._session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            values = registry.device_values(row)
        return self._device_view(values)

    def register_device(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a device and mirror it for its worker."""
        with self._session() as session:
            if registry.get_device(session, spec["name"]) is not None:
                raise Conflict(f"a device named {spec['name']!r} exists already")
            values = registry.device_values(registry.add_device(session, spec))
            self._mirror(values)
        log.info("device registered", extra={"device": values["name"]})
        return self._device_view(values)

    def _refuse_if_busy(self, name: str, action: str) -> None:
        if self.live.device_busy(name):
            raise CommandStateError(f"device {name!r} has commands queued or in flight; {action}")

    def update_device(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change settings or rename; refused while commands are queued or in flight."""
        with self._session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            self._refuse_if_busy(name, "wait for them or cancel them first")
            new_name = changes.get("name", name)
            if new_name != name and registry.get_device(session, new_name) is not None:
                raise Conflict(f"a device named {new_name!r} exists already")
            registry.change_device(session, row, changes)
            values = registry.device_values(row)
            if new_name != name:
                self.live.forget_device(name)
            self._mirror(values)
        log.info("device updated", extra={"device": new_name})
        return self._device_view(values)

    def delete_device(self, name: str) -> None:
        """Remove a device; its command history stays."""
        with self._session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            self._refuse_if_busy(name, "wait for them or cancel them first")
            session.delete(row)
            self.live.forget_device(name)
        log.info("device deleted", extra={"device": name})

    def _device_config(self, name: str) -> dict[str, Any]:
        config = self.live.device_config(name)
        if config is not None:
            return config
        # The mirror can be missing after Redis lost its data; SQL is the truth.
        with self._session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            values = registry.device_values(row)
        self._mirror(values)
        return values

    # commands -----------------------------------------------------------------------------
    def submit(self, device: str, user: str, request: dict[str, Any]) -> dict[str, Any]:
        """Accept a command: ledger row, live state, then the message to the device's queue."""
        # Only python commands need the device's settings; for the rest, the atomic create
        # below checks the device is registered without another round trip.
        if request["kind"] == "python" and not _allows_python(self._device_config(device)):
            raise ValidationFailed(
                f"device {device!r} does not allow python commands",
                [{"field": "kind", "message": "python is not enabled on this device"}],
            )
        analysis = request.get("analysis")
        check_analysis_request(analysis)
        values: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "device": device,
            "user": user,
            "kind": request["kind"],
            "payload": request["payload"],
            "read": request.get("read"),
            "timeout_s": float(request.get("timeout_s") or 5.0),
            "expires_s": request.get("expires_s"),
            "idempotent": bool(request.get("idempotent")),
            "analysis": None if analysis is None else {**analysis, "value": None},
            "attempts": 0,
            "created_at": utc_now_iso(),
        }
        # The ledger row is committed before the message exists, so no worker can run a
        # command the ledger does not know; a refusal afterwards removes the row again.
        self._insert_command.insert(values)
        message = self.live.execute_message(values["id"], device)
        try:
            result = self.live.create(values, self.settings.queue_cap, enqueue=message)
            if result.unknown_device:
                # The mirror may be gone after Redis lost its data: SQL decides, then retry.
                self._device_config(device)
                result = self.live.create(values, self.settings.queue_cap, enqueue=message)
        except (redis.RedisError, NotFound):
            self._forget_row(values["id"])
            raise
        if result.queue_full:
            self._forget_row(values["id"])
            raise QueueFull(
                f"device {device!r} already holds {self.settings.queue_cap} queued commands"
            )
        self._accepted.add(values["id"])
        log.info(
            "command accepted",
            extra={"device": device, "command": values["id"], "kind": values["kind"]},
        )
        return public_view({**values, "state": State.QUEUED.value})

    def _forget_row(self, command_id: str) -> None:
        with self._writing() as connection:
            ledger.delete_command(connection, command_id)

    def _values(self, command_id: str) -> dict[str, Any]:
        values = self.live.get(command_id)
        if values is not None:
            return values
        with self._session() as session:
            row = ledger.get_command(session, command_id)
            if row is None:
                raise NotFound(f"no command with id {command_id!r}")
            return ledger.command_view(row)

    def get_command(self, command_id: str) -> dict[str, Any]:
        """One command, live state first, else the ledger."""
        return public_view(self._values(command_id))

    def accepted_recently(self, command_id: str) -> bool:
        """Whether this process accepted the command in the last minute: it has a wake stream."""
        return command_id in self._accepted

    def wait_command(self, command_id: str, wait_s: float) -> dict[str, Any]:
        """The command once it settles, or after `wait_s` seconds, whichever is first."""
        values = self.live.wait(
            command_id, wait_s, is_settled_for_wait, expect_wake=command_id in self._accepted
        )
        return public_view(values) if values is not None else self.get_command(command_id)

    def list_commands(
        self, *, device: str | None, state: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """History newest first; rows not yet final in SQL show their live state."""
        with self._session() as session:
            rows, next_cursor = ledger.list_commands(
                session, device=device, state=state, limit=limit, cursor=cursor
            )
            items = [ledger.command_view(row) for row in rows]
        pending = [i for i, item in enumerate(items) if item["state"] not in TERMINAL]
        if pending:
            live = self.live.get_many([items[i]["id"] for i in pending])
            for i, values in zip(pending, live, strict=True):
                if values is not None:
                    items[i] = values
        return [public_view(item) for item in items], next_cursor

    def cancel(self, command_id: str) -> dict[str, Any]:
        """queued → cancelled; anything else is a conflict."""
        result = self.live.move(
            command_id,
            State.CANCELLED,
            expected=(State.QUEUED,),
            detail="cancelled by request",
            fields={"cancel": "1"},
        )
        if not result.moved:
            current = self._values(command_id)["state"]
            raise CommandStateError(
                f"command {command_id} is {current}; only a queued command can be cancelled"
            )
        log.info("command cancelled", extra={"command": command_id})
        return self.get_command(command_id)

    def analyse(self, command_id: str, value: object) -> dict[str, Any]:
        """Record a person's analysis: responded → done, for commands that asked for one."""
        values = self._values(command_id)
        analysis = values.get("analysis") or {}
        if analysis.get("analyzer") != "manual":
            raise CommandStateError(f"command {command_id} did not ask for manual analysis")
        result = self.live.move(
            command_id,
            State.DONE,
            expected=(State.RESPONDED,),
            detail="analysis recorded",
            fields={"analysis": {**analysis, "value": value}},
        )
        if not result.moved:
            raise CommandStateError(
                f"command {command_id} is {values['state']}; analysis needs it responded"
            )
        return self.get_command(command_id)

    def command_events(self, command_id: str) -> list[dict[str, Any]]:
        """The event log: live while Redis has it, else the ledger's copy."""
        if self.live.state_of(command_id) is not None:
            return self.live.events(command_id)
        with self._session() as session:
            if ledger.get_command(session, command_id) is None:
                raise NotFound(f"no command with id {command_id!r}")
            return ledger.events(session, command_id)


def _allows_python(config: dict[str, Any]) -> bool:
    return bool((config.get("options") or {}).get("allow_python"))

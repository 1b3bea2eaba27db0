"""What the API does, independent of HTTP: devices, submission, reads, cancel, analysis."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import redis
from cachetools import TTLCache
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from config import Settings
from tasks.analysis import check_analysis_request
from tasks.command_fit import allows_python, check_fits_device
from tasks.command_record import public_view, utc_now_iso
from tasks.command_values import CommandValues
from tasks.connections import redis_client
from tasks.db import ledger, registry
from tasks.db.command_insert import CommandInsert
from tasks.db.engine import make_engine, make_sessions
from tasks.db.write_lock import write_session, writer_turn
from tasks.device_control import DeviceActivation, HostSync
from tasks.errors import (
    CommandStateError,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    OutcomeUnknown,
    QueueFull,
    StoreNearlyFull,
    TokensChanged,
)
from tasks.host_reads import HostReads
from tasks.lifecycle import TERMINAL, State, is_settled_for_wait
from tasks.live_store import LiveStore
from tasks.recently_accepted import RecentlyAccepted
from tasks.store_health import RETRY_AFTER_S, AdmissionGuard, health_report
from tasks.token_access import Generation, TokenAccess
from tasks.transition_script import TransitionResult

log = logging.getLogger("hwq.service")

# A submission reads its device's settings from a cache this fresh, for this many devices.
DEVICE_CONFIG_CACHE_S = 1.0
DEVICE_CONFIG_CACHE_SIZE = 4096
# How long a submission waits for Redis to answer its create before the outcome is unknown.
REPLY_TIMEOUT_S = 5.0
# An unanswered create is sent this many times more, this far apart, before the API accepts
# the command on the ledger's word alone.
CREATE_ATTEMPTS = 3
CREATE_RETRY_PAUSE_S = 0.5
# The queue cap of a create sent again: the first may have run, so the command is accepted.
UNCAPPED = 1 << 30


class HwqService(TokenAccess, DeviceActivation, HostReads):
    """The operations behind every API route."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.redis = redis_client(settings, max_connections=max(64, settings.api_threads * 2))
        self.live = LiveStore(self.redis, settings.key_prefix)
        self.engine = make_engine(
            settings.sqlalchemy_url, lock_timeout_s=settings.sqlite_lock_timeout_s
        )
        self.sessions = make_sessions(self.engine)
        self._insert_command = CommandInsert(self.engine)
        self._accepted = RecentlyAccepted()
        self._admission = AdmissionGuard(self.redis, self.live.transitions_key)
        self.reply_timeout_s = REPLY_TIMEOUT_S
        self.create_retry_pause_s = CREATE_RETRY_PAUSE_S
        self._config_cache: TTLCache[str, dict[str, Any]] = TTLCache(
            maxsize=DEVICE_CONFIG_CACHE_SIZE, ttl=DEVICE_CONFIG_CACHE_S
        )
        self._config_lock = threading.Lock()
        self.host_sync = HostSync(settings)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def _write_session(self) -> AbstractContextManager[Session]:
        """A session in one write transaction; on SQLite, writers of every process take turns."""
        return write_session(self.sessions)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A Core write transaction; on SQLite, writers of every process take turns."""
        with writer_turn(self.engine), self.engine.begin() as connection:
            yield connection

    # health -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Whether Redis and the database answer, and how far the ledger trails Redis."""
        return health_report(self.redis, self.live.transitions_key, self.engine)

    # devices ------------------------------------------------------------------------------
    def _device_view(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, **self.live.device_status(values["name"])}

    def _mirror(self, values: dict[str, Any]) -> None:
        with self._config_lock:
            self._config_cache.clear()
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
        """Add a device and mirror it for its worker; `host` left out: this machine."""
        spec = {"host": self.settings.hostname, **spec}
        with self._write_session() as session:
            if registry.get_device(session, spec["name"]) is not None:
                raise Conflict(f"a device named {spec['name']!r} exists already")
            values = registry.device_values(registry.add_device(session, spec))
            self._mirror(values)
        self.host_sync.send([(values["host"], values["name"])])
        log.info("device registered", extra={"device": values["name"]})
        return self._device_view(values)

    def _refuse_if_busy(self, name: str, action: str) -> None:
        if self.live.device_busy(name):
            raise CommandStateError(f"device {name!r} has commands queued or in flight; {action}")

    def update_device(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change settings or rename; refused while commands are queued or in flight."""
        with self._write_session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            self._refuse_if_busy(name, "wait for them or cancel them first")
            new_name = changes.get("name", name)
            if new_name != name and registry.get_device(session, new_name) is not None:
                raise Conflict(f"a device named {new_name!r} exists already")
            old_host = row.host
            registry.change_device(session, row, changes)
            values = registry.device_values(row)
            if new_name != name:
                self.live.forget_device(name)
            self._mirror(values)
        # New settings are a fresh start for a device that failed; both hosts of a move hear.
        self.clear_failure(new_name)
        self.host_sync.send([(old_host, name), (values["host"], new_name)])
        log.info("device updated", extra={"device": new_name})
        return self._device_view(values)

    def delete_device(self, name: str) -> None:
        """Remove a device: deactivate it (its port released), then forget it; its command
        history stays. Refused while it has commands queued or in flight."""
        self._refuse_if_busy(name, "wait for them or cancel them first")
        self.deactivate_device(name)
        with self._write_session() as session:
            row = registry.get_device(session, name)
            if row is None:
                raise NotFound(f"no device named {name!r}")
            self._refuse_if_busy(name, "it stays deactivated; wait for them or cancel them")
            host = row.host
            session.delete(row)
            self.live.forget_device(name)
            with self._config_lock:
                self._config_cache.pop(name, None)
        self.host_sync.send([(host, name)])
        log.info("device deleted", extra={"device": name})

    def _submission_config(self, name: str) -> dict[str, Any]:
        """The device's settings a submission is checked against, read at most once a second.

        A change made elsewhere reaches this process within that second; the device worker
        checks the command against the settings again before any byte goes out.
        """
        with self._config_lock:
            config = self._config_cache.get(name)
        if config is None:
            config = self._device_config(name)
            with self._config_lock:
                self._config_cache[name] = config
        return config

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
    def submit(
        self,
        device: str,
        user: str,
        request: dict[str, Any],
        idempotency_key: str | None = None,
        checked_at: tuple[Generation] | None = None,
    ) -> dict[str, Any]:
        """Accept a command: ledger row, live state, then the message to the device's queue.

        With `idempotency_key`, a repeat of the same submission by the same user returns the
        command the first one made; a different submission under that key is refused.
        `checked_at`: (the token generation at which the user's token was last found valid,
        by a cached lookup); the create then refuses with TokensChanged if any token was
        revoked since, atomically with queueing the command.
        """
        # The mirrored settings; an unknown device is a 404 before any row exists.
        config = self._submission_config(device)
        check_fits_device(device, config, request)
        if request["kind"] == "python" and not allows_python(config):
            # A setting of the device, not a fault of the request: the same body is accepted
            # once the device allows python.
            raise CommandStateError(
                f"device {device!r} does not allow python commands (options.python)"
            )
        analysis = request.get("analysis")
        check_analysis_request(analysis)
        self._admission.check()
        values: CommandValues = {
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
            # Until Redis stamps it in the atomic create; see `_create`.
            "created_at": utc_now_iso(),
        }
        if idempotency_key is not None:
            values["idempotency_key"] = idempotency_key
            values["request_digest"] = request_digest(device, request)
        # The ledger row is committed before the message exists, so no worker can run a
        # command the ledger does not know; a refusal afterwards removes the row again.
        try:
            self._insert_command.insert(values)
        except IntegrityError:
            if idempotency_key is None:
                raise
            return self._repeated_submission(user, idempotency_key, values["request_digest"])
        values["created_at"] = self._create(values, self.token_check(checked_at))
        self._accepted.add(values["id"])
        log.info(
            "command accepted",
            extra={"device": device, "command": values["id"], "kind": values["kind"]},
        )
        return public_view({**values, "state": State.QUEUED.value})

    def _create(self, values: CommandValues, token_check: tuple[str, str] | None = None) -> str:
        """The command's live state and message; returns created_at as Redis stamped it.

        Once the create has been sent, the command counts as accepted: Redis may have run it
        even when its reply was lost, and a command that runs must have its ledger row. So
        the row is removed only on an answer that says the create did not run, or when it
        could not be sent at all. Otherwise it is sent again (it finds the command if the
        first one ran), and if Redis stays out of reach the reaper's reconcile sweep
        creates it from the ledger later.
        """
        device = values["device"]
        message = self.live.execute_message(values["id"], device)
        try:
            result = self.live.create(
                values,
                self.settings.queue_cap,
                enqueue=message,
                reply_timeout_s=self.reply_timeout_s,
                token_check=token_check,
            )
            if result.unknown_device:
                # The mirror may be gone after Redis lost its data: SQL decides, then retry.
                self._device_config(device)
                result = self.live.create(
                    values,
                    self.settings.queue_cap,
                    enqueue=message,
                    reply_timeout_s=self.reply_timeout_s,
                    token_check=token_check,
                )
        except OutcomeUnknown as e:
            return self._create_again(values, message, e, token_check)
        except (redis.RedisError, NotFound) as e:
            self._forget_row(values["id"])
            if isinstance(e, redis.ResponseError) and str(e).startswith("OOM"):
                raise StoreNearlyFull("Redis is full; try again shortly", RETRY_AFTER_S) from e
            raise
        self._refuse_if_tokens_changed(result, values)
        if result.queue_full:
            self._forget_row(values["id"])
            raise QueueFull(
                f"device {device!r} already holds {self.settings.queue_cap} queued commands"
            )
        return _created_at(result, values)

    def _create_again(
        self,
        values: CommandValues,
        message: tuple[str, str],
        first: OutcomeUnknown,
        token_check: tuple[str, str] | None,
    ) -> str:
        context = {"device": values["device"], "command": values["id"]}
        log.warning("create unanswered; sending it again", extra={**context, "error": str(first)})
        for attempt in range(CREATE_ATTEMPTS):
            if attempt:
                time.sleep(self.create_retry_pause_s)
            try:
                # The first create may have run: the queue cap no longer decides.
                result = self.live.create(
                    values,
                    UNCAPPED,
                    enqueue=message,
                    reply_timeout_s=self.reply_timeout_s,
                    token_check=token_check,
                )
                if result.unknown_device:
                    self._device_config(values["device"])
                    continue
                # The first did not run, and this one refused.
                self._refuse_if_tokens_changed(result, values)
                return _created_at(result, values)
            except (redis.RedisError, OutcomeUnknown, NotFound, SQLAlchemyError) as e:
                log.warning("create still unanswered", extra={**context, "error": str(e)})
        log.warning("command accepted before Redis confirmed it; the reaper completes it",
                    extra=context)  # fmt: skip
        return str(values["created_at"])

    def _refuse_if_tokens_changed(self, result: TransitionResult, values: CommandValues) -> None:
        if result.tokens_changed:
            self._forget_row(values["id"])
            raise TokensChanged("a token was revoked since this one was checked")

    def _repeated_submission(self, user: str, key: str, digest: str) -> dict[str, Any]:
        with self._session() as session:
            row = ledger.by_idempotency_key(session, user, key)
            if row is None:  # the first submission was refused meanwhile and its row removed
                raise Conflict("a submission with this Idempotency-Key is being refused; retry")
            if row.request_digest != digest:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used for a different submission"
                )
            command_id = row.id
        return self.get_command(command_id)

    def _forget_row(self, command_id: str) -> None:
        with self._writing() as connection:
            ledger.delete_command(connection, command_id)

    def _values(self, command_id: str) -> CommandValues:
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

    def cancel(self, command_id: str, by: str | None = None) -> dict[str, Any]:
        """queued → cancelled; anything else is a conflict. `by`: who asked, for the event."""
        result = self.live.move(
            command_id,
            State.CANCELLED,
            expected=(State.QUEUED,),
            detail=f"cancelled by {by}" if by else "cancelled by request",
            fields={"cancel": True},
        )
        if not result.moved:
            current = self._values(command_id)["state"]
            raise CommandStateError(
                f"command {command_id} is {current}; only a queued command can be cancelled"
            )
        log.info("command cancelled", extra={"command": command_id, "by": by})
        return self.get_command(command_id)

    def analyse(self, command_id: str, value: object, by: str | None = None) -> dict[str, Any]:
        """Record a person's analysis: responded → done, for commands that asked for one."""
        values = self._values(command_id)
        analysis = values.get("analysis") or {}
        if analysis.get("analyzer") != "manual":
            raise CommandStateError(f"command {command_id} did not ask for manual analysis")
        result = self.live.move(
            command_id,
            State.DONE,
            expected=(State.RESPONDED,),
            detail=f"analysis recorded by {by}" if by else "analysis recorded",
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


def _created_at(result: TransitionResult, values: CommandValues) -> str:
    return result.created_at or values["created_at"]


def request_digest(device: str, request: dict[str, Any]) -> str:
    """What makes two submissions the same: the device and the validated body."""
    canonical = json.dumps([device, request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()

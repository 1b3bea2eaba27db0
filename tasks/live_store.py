"""Live state in Redis: commands, their event logs, per-device sets, waits and live streams."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from tasks.celery_app import broker_key_prefix
from tasks.command_record import (
    command_from_redis,
    from_redis_fields,
    to_redis_fields,
    utc_now_iso,
)
from tasks.command_values import CommandChanges, CommandValues
from tasks.command_wait import CommandWait, longest_block_s
from tasks.command_wait import decode_hash as _decode_hash
from tasks.connections import send_and_read
from tasks.device_stream import stream_key
from tasks.errors import OutcomeUnknown
from tasks.host_store import host_devices_key, move_between_hosts, presence_fields
from tasks.lifecycle import ALLOWED, TERMINAL, DeviceState, State, device_state
from tasks.messages import execute_message
from tasks.queues import device_queue
from tasks.redis_replies import Fields, members, text, text_fields

# A device worker refreshes its presence this often and it lapses after the TTL.
PRESENCE_TTL_S = 30


def _render_script() -> str:
    """The transition script with the lifecycle's edges written in, so Python is the one source."""
    source = resources.files("tasks").joinpath("transition.lua").read_text()
    edges = ", ".join(
        f"{origin.value} = {{" + ", ".join(f"{t.value} = true" for t in sorted(targets)) + "}"
        for origin, targets in ALLOWED.items()
    )
    terminal = ", ".join(f"{s.value} = true" for s in sorted(TERMINAL))
    return source.replace("--ALLOWED--", f"local ALLOWED = {{{edges}}}").replace(
        "--TERMINAL--", f"local TERMINAL = {{{terminal}}}"
    )


@dataclass(frozen=True)
class TransitionResult:
    """What a compare-and-set did: whether it moved, and the states before and after."""

    moved: bool
    previous: str | None
    state: str | None
    exists: bool = True
    queue_full: bool = False
    # The command's device has no settings in Redis (create only).
    unknown_device: bool = False
    # The command's values, returned by a claim this delivery won.
    values: CommandValues | None = None
    # When the command reached its queue, by Redis's clock (a stamped create only).
    created_at: str | None = None
    # The device the command belongs to, when a worker of another device tried to claim it.
    other_device: str | None = None


class LiveStore:
    """The Redis side of hwq: every read and atomic change of live command state."""

    def __init__(self, client: redis.Redis, prefix: str, lease_grace_s: float = 15.0) -> None:
        self.redis = client
        self.prefix = prefix
        # Beyond its timeout, how long a claimed command may stay silent before it counts as
        # lost; it covers opening the port and reporting the result.
        self.lease_grace_s = lease_grace_s
        source = _render_script()
        self._source = source
        self._script = client.register_script(source)
        # The name Redis knows the script by, for EVALSHA sent on a connection of one's own.
        self.script_sha = hashlib.sha1(source.encode()).hexdigest()

    # keys ---------------------------------------------------------------------------------
    def command_key(self, command_id: str) -> str:
        """The hash holding one command."""
        return f"{self.prefix}:cmd:{command_id}"

    def log_key(self, command_id: str) -> str:
        """The stream of one command's events."""
        return f"{self.prefix}:cmd:{command_id}:log"

    def wake_key(self, command_id: str) -> str:
        """The stream long-polls block on: an entry each time the command may have settled."""
        return f"{self.prefix}:cmd:{command_id}:wake"

    @property
    def transitions_key(self) -> str:
        """The stream the recorder copies into SQL."""
        return f"{self.prefix}:transitions"

    def device_set_key(self, device: str, which: str) -> str:
        """One of a device's live sets: queued, inflight or responded."""
        return f"{self.prefix}:dev:{device}:{which}"

    def device_config_key(self, device: str) -> str:
        """The device's settings, mirrored from SQL so workers need no database."""
        return f"{self.prefix}:device:{device}"

    def stream_key(self, device: str) -> str:
        """The device's live stream: its input and output, presence and commands' states."""
        return stream_key(self.prefix, device)

    # transitions --------------------------------------------------------------------------
    def _run(self, mode: str, command_id: str, **options: Any) -> TransitionResult:
        reply = self._script(args=self._transition_args(mode, command_id, **options))
        return self.transition_result(reply)

    def _transition_args(
        self,
        mode: str,
        command_id: str,
        *,
        detail: str = "",
        expected: str = "*",
        targets: str = "",
        lease_s: float | None = None,
        extra: str = "",
        fields: CommandValues | CommandChanges | None = None,
    ) -> list[Any]:
        flat = to_redis_fields(fields or {})
        args: list[Any] = [
            self.prefix,
            mode,
            command_id,
            utc_now_iso(),
            detail,
            expected,
            targets,
            "" if lease_s is None else f"{lease_s:.3f}",
            extra,
        ]
        for key, value in flat.items():
            args.extend((key, value))
        return args

    @staticmethod
    def transition_result(reply: list[Any]) -> TransitionResult:
        """What the transition script's reply says happened."""
        code, previous, state, *rest = reply
        values = created_at = None
        if code == -4:
            return TransitionResult(
                moved=False,
                previous=previous.decode() if previous else None,
                state=state.decode() if state else None,
                other_device=rest[0].decode(),
            )
        if rest:
            flat = rest[0]
            raw = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
            # A won claim returns the whole command; a stamped create only its created_at.
            if "id" in raw:
                values = command_from_redis(raw)
            else:
                created_at = from_redis_fields(raw).get("created_at")
        return TransitionResult(
            moved=code == 1,
            previous=previous.decode() if previous else None,
            state=state.decode() if state else None,
            exists=code != -1,
            queue_full=code == -2,
            unknown_device=code == -3,
            values=values,
            created_at=created_at,
        )

    def create(
        self,
        values: CommandValues,
        queue_cap: int,
        enqueue: tuple[str, str] | None = None,
        *,
        reply_timeout_s: float | None = None,
        restore_as: State | None = None,
        detail: str = "accepted",
    ) -> TransitionResult:
        """Store a new command as queued, unless its device already holds `queue_cap`.

        The device must have its settings mirrored (else `unknown_device`). With `enqueue` =
        (broker list key, message), the message is pushed in the same atomic step, so a
        command is never queued without its message or the reverse.

        With `reply_timeout_s` (the API's submissions), created_at is stamped from Redis's
        clock and returned in `created_at`, and the script is sent on a connection taken for it:
        a failure to connect raises `redis.ConnectionError` (nothing was sent); a reply not
        back within the timeout, or a connection lost after sending, raises `OutcomeUnknown`.
        Sending the same create again is harmless: it finds the command and changes nothing.
        `restore_as`: the state a command the ledger holds comes back in after Redis lost it.
        """
        options: dict[str, Any] = {
            "cap": queue_cap,
            "device_key": self.device_config_key(values["device"]),
        }
        if enqueue is not None:
            options["queue"], options["message"] = enqueue
        if restore_as is not None:
            options["state"] = restore_as.value
        if reply_timeout_s is None:
            return self._run(
                "create", values["id"], detail=detail, extra=json.dumps(options), fields=values
            )
        options["stamp"] = True
        args = self._transition_args(
            "create", values["id"], detail=detail, extra=json.dumps(options), fields=values
        )
        return self.transition_result(self._run_bounded(args, reply_timeout_s))

    def _run_bounded(self, args: list[Any], reply_timeout_s: float) -> Any:
        pool = self.redis.connection_pool
        connection = pool.get_connection("EVALSHA")
        try:
            try:
                return send_and_read(
                    connection, ("EVALSHA", self.script_sha, 0, *args), reply_timeout_s
                )
            except redis.exceptions.NoScriptError:
                # Refused before it ran: this Redis has not seen the script yet.
                return send_and_read(
                    connection, ("EVAL", self._source, 0, *args), reply_timeout_s
                )
        except OutcomeUnknown:
            # A reply may still arrive on this connection; it must not reach the next user.
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

    def move(
        self,
        command_id: str,
        *targets: State,
        expected: tuple[State, ...] | None = None,
        detail: str = "",
        fields: CommandChanges | None = None,
    ) -> TransitionResult:
        """Move a command along allowed edges, optionally only from the `expected` states."""
        return self._run(
            "move",
            command_id,
            detail=detail,
            expected=",".join(expected) if expected else "*",
            targets=",".join(targets),
            fields=fields,
        )

    def note(self, command_id: str, detail: str) -> TransitionResult:
        """Append an event to a command's log without changing its state (`moved` if logged)."""
        return self._run("note", command_id, detail=detail)

    def broker_queue_key(self, device: str) -> str:
        """The Redis list holding the device's Celery messages."""
        return broker_key_prefix(self.prefix) + device_queue(device)

    def execute_message(self, command_id: str, device: str) -> tuple[str, str]:
        """The broker list and Celery message that make the device's worker run a command."""
        return self.broker_queue_key(device), execute_message(command_id, device_queue(device))

    def enqueue(self, command_id: str, device: str) -> None:
        """Push a command's message again; only the delivery that wins the claim runs it."""
        self.redis.lpush(*self.execute_message(command_id, device))

    def claim(self, command_id: str, worker: str, device: str | None = None) -> TransitionResult:
        """The delivery rule: queued → dispatched for exactly one delivery, or expired/cancelled.

        With `device` (the claiming worker's), a command of another device is refused and left
        as it is: the result's `other_device` names the device it belongs to.
        """
        return self._run("claim", command_id, **self._claim_options(worker, device))

    def claim_args(
        self, command_id: str, worker: str, device: str, *, lease_s: float, detail: str
    ) -> list[Any]:
        """The script arguments of a claim by `worker` for `device` with its own lease grace
        (an HTTP-polling device's claim, run on whichever client polls)."""
        changes: CommandChanges = {"claimed_by": worker}
        return self._transition_args(
            "claim", command_id, detail=detail, lease_s=lease_s, extra=device, fields=changes
        )

    def run_script(self, args: list[Any]) -> Any:
        """Run the transition script with arguments made by one of the `*_args` methods."""
        return self._script(args=args)

    @property
    def script_source(self) -> str:
        """The transition script, for a client of another kind (redis.asyncio) to register."""
        return self._source

    def _claim_options(self, worker: str, device: str | None) -> dict[str, Any]:
        changes: CommandChanges = {"claimed_by": worker}
        return {
            "detail": f"claimed by {worker}",
            "lease_s": self.lease_grace_s,
            "extra": device or "",
            "fields": changes,
        }

    # reads --------------------------------------------------------------------------------
    def get_many(self, command_ids: list[str]) -> list[CommandValues | None]:
        """Several commands' live values in one round trip, None where Redis holds none."""
        pipe = self.redis.pipeline(transaction=False)
        for command_id in command_ids:
            pipe.hgetall(self.command_key(command_id))
        return [_decode_hash(raw) for raw in pipe.execute()]

    def get(self, command_id: str) -> CommandValues | None:
        """One command's live values, or None when Redis does not hold it."""
        return _decode_hash(self.redis.hgetall(self.command_key(command_id)))

    def state_of(self, command_id: str) -> str | None:
        """Just the state, for cheap re-checks."""
        value = self.redis.hget(self.command_key(command_id), "state")
        return text(value) if value else None

    def events(self, command_id: str) -> list[dict[str, Any]]:
        """The command's event log, oldest first."""
        entries = self.redis.xrange(self.log_key(command_id))
        return [_event(fields) for _, fields in entries or [] if fields is not None]

    def wait(
        self, command_id: str, timeout_s: float, settled: Any, expect_wake: bool = False
    ) -> CommandValues | None:
        """Block until `settled(values)` or the timeout; wakes only when the command may have.

        `expect_wake`: the command was just accepted here, so the first round may block on
        its wake stream at once (see CommandWait).
        """
        return self.command_wait(command_id, timeout_s, settled, expect_wake).run(self.redis)

    def command_wait(
        self,
        command_id: str,
        timeout_s: float,
        settled: Any,
        expect_wake: bool = False,
        client: Any = None,
    ) -> CommandWait:
        """The rounds of a long-poll on one command, each block within `client`'s socket
        timeout (this store's client unless another, such as an asyncio one, runs them)."""
        return CommandWait(
            self.wake_key(command_id),
            self.command_key(command_id),
            timeout_s,
            settled,
            longest_block_s=longest_block_s(client or self.redis),
            expect_wake=expect_wake,
        )

    # devices ------------------------------------------------------------------------------
    def device_counts(self, device: str) -> tuple[int, int, int]:
        """How many of the device's commands are queued, in flight and awaiting analysis."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.device_set_key(device, "queued"))
        pipe.scard(self.device_set_key(device, "inflight"))
        pipe.scard(self.device_set_key(device, "responded"))
        queued, inflight, responded = pipe.execute()
        return int(queued), int(inflight), int(responded)

    def device_status(self, device: str) -> dict[str, Any]:
        """Live fields of a device: state 0-3, queue depth, presence."""
        queued, inflight, responded = self.device_counts(device)
        return {
            "state": int(device_state(queued, inflight, responded)),
            "queue_depth": queued,
            **presence_fields(self.redis, self.device_config_key(device)),
        }

    def device_busy(self, device: str) -> bool:
        """Whether the device has commands queued or in flight."""
        queued, inflight, _ = self.device_counts(device)
        return bool(queued or inflight)

    def host_devices_key(self, host: str) -> str:
        """The set of the names of the devices a host agent serves."""
        return host_devices_key(self.prefix, host)

    def put_device_config(self, device: str, config: dict[str, Any]) -> None:
        """Mirror a device's settings for its worker, and keep it in its host's set only."""
        key = self.device_config_key(device)
        old_host = self.redis.hget(key, "host")
        pipe = self.redis.pipeline()
        move_between_hosts(
            pipe, self.prefix, device, text(old_host or b""), config.get("host") or None
        )
        pipe.delete(key)
        flat: dict[FieldT, EncodableT] = {
            k: v for k, v in to_redis_fields(config).items() if k != "options"
        }
        flat["options"] = json.dumps(config.get("options") or {})
        pipe.hset(key, mapping=flat)
        pipe.execute()

    def device_config(self, device: str) -> dict[str, Any] | None:
        """A device's mirrored settings, or None if it is not registered."""
        return self.parse_device_config(self.redis.hgetall(self.device_config_key(device)))

    @staticmethod
    def parse_device_config(raw: Fields) -> dict[str, Any] | None:
        """A device's settings from the HGETALL of its mirror; None if that was empty."""
        if not raw:
            return None
        values = text_fields(raw)
        config: dict[str, Any] = dict(values)
        config["baudrate"] = int(values.get("baudrate") or 115200)
        config["options"] = json.loads(values.get("options") or "{}")
        # A mirror written before devices could be deactivated holds no `active`.
        config["active"] = values.get("active") != "0"
        return config

    def forget_device(self, device: str) -> None:
        """Drop a device's mirror, its presence, its live sets and its place in its host's set."""
        base = self.device_config_key(device)
        host = self.redis.hget(base, "host")
        if host:
            self.redis.srem(host_devices_key(self.prefix, text(host)), device)
        self.redis.delete(
            base,
            f"{base}:alive",
            f"{base}:last_seen",
            f"{base}:presence",
            f"{base}:error",
            f"{base}:restarts",
            # The legacy protocol's current command (LegacyProtocol.current_key): a device made
            # anew under this name starts with none.
            f"{base}:legacy",
            self.stream_key(device),
            *(self.device_set_key(device, which) for which in ("queued", "inflight", "responded")),
        )

    def mark_present(self, device: str) -> None:
        """A device worker says it is alive."""
        base = self.device_config_key(device)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{base}:alive", "1", ex=PRESENCE_TTL_S)
        pipe.set(f"{base}:last_seen", utc_now_iso())
        pipe.execute()

    def mark_absent(self, device: str) -> None:
        """A device worker is shutting down."""
        self.redis.delete(f"{self.device_config_key(device)}:alive")

    # sweeps for the reaper ----------------------------------------------------------------
    def due(self, which: str, now: float | None = None) -> list[str]:
        """Command ids whose expiry (`expiries`) or lease (`leases`) has passed, by Redis time."""
        if now is None:
            seconds, micros = self.redis.time()
            now = seconds + micros / 1_000_000
        ids = self.redis.zrangebyscore(f"{self.prefix}:{which}", "-inf", now, start=0, num=500)
        return members(ids)

    def queued_ids(self, device: str) -> list[str]:
        """A device's queued command ids, oldest first."""
        return members(self.redis.zrange(self.device_set_key(device, "queued"), 0, -1))


def _event(fields: Fields) -> dict[str, Any]:
    values = text_fields(fields)
    return {"state": values["state"], "at": values["at"], "detail": values.get("detail") or None}


__all__ = ["DeviceState", "LiveStore", "TransitionResult"]

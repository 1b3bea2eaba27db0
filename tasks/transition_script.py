"""The transition script (transition.lua): every atomic change of a command's live state.

Its source gets the lifecycle's edges written in here, so Python stays their one source; its
arguments and its reply have one shape whichever client runs it (the live store's, an asyncio
one for polled claims), so they are made and read here. A submission's create is sent on a
connection of its own with a deadline on the reply (`TransitionScript.run_bounded`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from tasks.command_record import command_from_redis, from_redis_fields, to_redis_fields, utc_now_iso
from tasks.command_values import CommandChanges, CommandValues
from tasks.connections import send_and_read
from tasks.errors import OutcomeUnknown
from tasks.lifecycle import ALLOWED, TERMINAL


def render_script() -> str:
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
    # A token was revoked since the generation the create was given (create only).
    tokens_changed: bool = False
    # The command's values, returned by a claim this delivery won.
    values: CommandValues | None = None
    # When the command reached its queue, by Redis's clock (a stamped create only).
    created_at: str | None = None
    # The device the command belongs to, when a worker of another device tried to claim it.
    other_device: str | None = None


def transition_args(
    prefix: str,
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
    """The script's arguments for one change of a command under the key prefix `prefix`."""
    flat = to_redis_fields(fields or {})
    args: list[Any] = [
        prefix,
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
        tokens_changed=code == -5,
        values=values,
        created_at=created_at,
    )


class TransitionScript:
    """The transition script registered on one blocking client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.source = render_script()
        self._script = client.register_script(self.source)
        # The name Redis knows the script by, for EVALSHA sent on a connection of one's own.
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def run(self, args: list[Any]) -> Any:
        """Run the script on the client's pool, loading it first where Redis lacks it."""
        return self._script(args=args)

    def run_bounded(self, args: list[Any], reply_timeout_s: float) -> Any:
        """Run the script on a connection taken for it, its reply due within the timeout.

        A failure to connect raises `redis.ConnectionError` (nothing was sent); a reply not
        back in time, or a connection lost after sending, raises `OutcomeUnknown`.
        """
        pool = self.redis.connection_pool
        connection = pool.get_connection("EVALSHA")
        try:
            try:
                return send_and_read(connection, ("EVALSHA", self.sha, 0, *args), reply_timeout_s)
            except redis.exceptions.NoScriptError:
                # Refused before it ran: this Redis has not seen the script yet.
                return send_and_read(connection, ("EVAL", self.source, 0, *args), reply_timeout_s)
        except OutcomeUnknown:
            # A reply may still arrive on this connection; it must not reach the next user.
            connection.disconnect()
            raise
        finally:
            pool.release(connection)

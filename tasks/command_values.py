"""The one shape of a command inside hwq, shared by the API, the live store, the ledger and the
device runtime.

A command travels as a plain dict: flattened into a Redis hash by the transition script, into
a row by the ledger, and read back by a device worker from its claim. Typing that dict here,
rather than passing `dict[str, Any]` from layer to layer, makes a misspelt key an error mypy
reports, not a KeyError on a device.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class CommandValues(TypedDict):
    """A command as it is accepted, stored live, kept in the ledger and run."""

    # What the submission fixed; every layer holds these.
    id: str
    device: str
    user: str
    kind: str
    # Text for line, raw (base64) and python commands; {command_id, args} for frame ones.
    payload: Any
    # When a raw reply ends: {until?, bytes?, idle_ms?}; None for every other kind.
    read: dict[str, Any] | None
    timeout_s: float
    expires_s: float | None
    idempotent: bool
    # None, or {analyzer, params?, value}: what analyses the reply, and its result.
    analysis: dict[str, Any] | None
    attempts: int
    created_at: str
    # Where the command stands; absent only before the atomic create and while restoring.
    state: NotRequired[str]
    response: NotRequired[dict[str, Any] | None]
    error: NotRequired[str | None]
    dispatched_at: NotRequired[str | None]
    responded_at: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    # The client's Idempotency-Key and what it submitted under it (the ledger keeps them).
    idempotency_key: NotRequired[str]
    request_digest: NotRequired[str]
    # The live store's bookkeeping: the last event's number, the worker that won the claim,
    # the Redis time it expires at, a cancel asked for, and a command put back from the
    # ledger after Redis lost its data (a worker that sent it already does not send it again).
    seq: NotRequired[int]
    claimed_by: NotRequired[str | None]
    expires_at: NotRequired[str | None]
    cancel: NotRequired[bool]
    restored: NotRequired[bool]


class CommandChanges(TypedDict, total=False):
    """Fields a transition stores along with its new state."""

    response: dict[str, Any]
    analysis: dict[str, Any]
    error: str
    claimed_by: str
    cancel: bool


# Keys the live hash stores as "1" or "0".
BOOLEAN_FIELDS = ("idempotent", "cancel", "restored")

"""The command lifecycle of DESIGN §2: states, the allowed edges and per-device state."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any


class State(StrEnum):
    """Where a command is in its life."""

    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RESPONDED = "responded"
    DONE = "done"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


TERMINAL: frozenset[State] = frozenset(
    {
        State.DONE,
        State.FAILED,
        State.TIMED_OUT,
        State.EXPIRED,
        State.CANCELLED,
        State.INTERRUPTED,
    }
)

# The only edges a transition may take. dispatched → queued is the retry of an idempotent
# command whose worker vanished; responded → interrupted never happens because the reply is
# already recorded by then.
ALLOWED: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.DISPATCHED, State.CANCELLED, State.EXPIRED}),
    State.DISPATCHED: frozenset(
        {State.RESPONDED, State.FAILED, State.TIMED_OUT, State.INTERRUPTED, State.QUEUED}
    ),
    State.RESPONDED: frozenset({State.DONE}),
}

# An idempotent command is put back at most this many times in all.
MAX_ATTEMPTS = 3


class DeviceState(IntEnum):
    """Per-device state, numbered as the education ancestor numbered it."""

    REST = 0
    REQUESTED = 1
    COLLECTED = 2
    RESPONDED = 3


def device_state(queued: int, in_flight: int, awaiting_analysis: int) -> DeviceState:
    """The device's state from how many of its commands sit in each live state.

    A command on the wire outranks one waiting for analysis, which outranks one waiting in
    the queue: the number says what the device itself is busy with first.
    """
    if in_flight:
        return DeviceState.COLLECTED
    if awaiting_analysis:
        return DeviceState.RESPONDED
    if queued:
        return DeviceState.REQUESTED
    return DeviceState.REST


def is_terminal(state: str) -> bool:
    """Whether a command in this state can never change again."""
    return state in TERMINAL


def is_settled_for_wait(values: Mapping[str, Any]) -> bool:
    """A long-poll returns once a command is terminal or waits for a person's analysis
    (`values`: the command as hwq holds it, or as the API shows it)."""
    if values["state"] in TERMINAL:
        return True
    analysis = values.get("analysis") or {}
    return values["state"] == State.RESPONDED and analysis.get("analyzer") == "manual"

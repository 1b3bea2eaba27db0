"""The chaos run's verdict: what became of every accepted command, from four witnesses.

The API (what a client sees), the SQL ledger (read directly), Redis's live state and the
simulators' logs (every line each device received) are compared command by command.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import create_engine, func, select

from bench.chaos_clients import PlannedCommand
from tasks.db.models import CommandEventRow, CommandRow
from tasks.lifecycle import TERMINAL

# The counts that must all be 0.
MUST_BE_ZERO = ("lost", "duplicated", "stuck", "mismatched", "wrong_answer")
# How many example ids each failing count lists.
EXAMPLES = 5


@dataclass
class Outcome:
    """Every command's fate as each witness tells it."""

    plans: list[PlannedCommand]
    # From the ledger: id → row values, and id → how many terminal events it recorded.
    ledger: dict[str, dict[str, Any]]
    terminal_events: dict[str, int]
    # From Redis: id → live state (absent where Redis holds none).
    live: dict[str, str]
    # From the API: id → the command (None for a 404).
    api: dict[str, dict[str, Any] | None]
    # From the simulators' logs: how many times each device received each line.
    received: dict[str, Counter[str]]


@dataclass
class Verdict:
    """The counts the run reports, each with example command ids."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    states: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, command: str) -> None:
        """Count one failure of kind `name`, keeping the first few ids as examples."""
        self.counts[name] = self.counts.get(name, 0) + 1
        shown = self.examples.setdefault(name, [])
        if len(shown) < EXAMPLES:
            shown.append(command)

    @property
    def passed(self) -> bool:
        """Whether every count that must be 0 is."""
        return all(self.counts.get(name, 0) == 0 for name in MUST_BE_ZERO)


def read_ledger(database_url: str, devices: list[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Every command row of `devices`, and how many terminal events each recorded."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(CommandRow).where(CommandRow.device.in_(devices)))
            ledger = {row.id: dict(row._mapping) for row in rows}
            counted = connection.execute(
                select(CommandEventRow.command_id, func.count())
                .where(CommandEventRow.state.in_(sorted(TERMINAL)))
                # A late reply is noted as an event of its timed-out command, in the state it
                # keeps: a note, not a second ending.
                .where(CommandEventRow.detail.not_like("late_reply%"))
                .group_by(CommandEventRow.command_id)
            )
            terminal = {command_id: int(n) for command_id, n in counted if command_id in ledger}
    finally:
        engine.dispose()
    return ledger, terminal


def read_live(client: redis.Redis, prefix: str, ids: list[str]) -> dict[str, str]:
    """The live state of each command Redis still holds."""
    pipe = client.pipeline(transaction=False)
    for command_id in ids:
        pipe.hget(f"{prefix}:cmd:{command_id}", "state")
    return {i: s.decode() for i, s in zip(ids, pipe.execute(), strict=True) if s is not None}


def read_received(sim_logs: dict[str, str]) -> dict[str, Counter[str]]:
    """Per device, how many times each line reached it (log lines are `<time> <line>`)."""
    return {
        device: Counter(line.split(" ", 1)[1] for line in text.splitlines() if " " in line)
        for device, text in sim_logs.items()
    }


def wait_until(check: Callable[[], bool], timeout_s: float, pause_s: float = 1.0) -> bool:
    """Poll `check` until it is true or `timeout_s` passes; whether it came true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause_s)


def judge(outcome: Outcome) -> Verdict:
    """Count lost, duplicated, stuck, mismatched and wrong answers, and what else went amiss."""
    verdict = Verdict()
    for name in (*MUST_BE_ZERO, "never_accepted", "phantom_rows", "refusals_5xx"):
        verdict.counts[name] = 0
    rows_by_payload: dict[tuple[str, str], list[str]] = {}
    for command_id, row in outcome.ledger.items():
        rows_by_payload.setdefault((row["device"], str(row["payload"])), []).append(command_id)
    for plan in outcome.plans:
        _judge_plan(plan, outcome, rows_by_payload.get((plan.device, plan.payload), []), verdict)
    return verdict


def _judge_plan(plan: PlannedCommand, outcome: Outcome, rows: list[str], verdict: Verdict) -> None:
    label = plan.accepted[0] if plan.accepted else f"plan {plan.index} ({plan.payload})"
    if any(status.startswith("5") and status != "503" for status in plan.refusals):
        verdict.add("refusals_5xx", label)
    if not plan.accepted:
        verdict.add("never_accepted", label)
    for command_id in rows:
        if command_id not in plan.accepted:
            # A row the client never heard of, made by a submission whose answer was lost.
            # One left unfinished is stuck all the same: history shows it queued for ever.
            verdict.add("phantom_rows", command_id)
            if outcome.ledger[command_id]["state"] not in TERMINAL:
                verdict.add("stuck", command_id)
                verdict.add("stuck_phantom_rows", command_id)
    received = outcome.received.get(plan.device, Counter())[plan.payload]
    # A second row for one planned command: a retried submission created it twice.
    twice_submitted = len(rows) > 1
    twice_run = received > 1 and not plan.body.get("idempotent")
    if twice_submitted or twice_run:
        verdict.add("duplicated", label)
    if twice_submitted:
        verdict.add("duplicated_submission", label)
    if twice_run:
        verdict.add("duplicated_run", label)
    # Each time a line reaches the device, a claim must have been won for it.
    claims = sum(int(_view(outcome, i).get("attempts") or 0) for i in {*rows, *plan.accepted})
    if received > claims:
        verdict.add("reached_device_unclaimed", label)
    for command_id in plan.accepted:
        _judge_accepted(command_id, plan, outcome, received, verdict)


def _view(outcome: Outcome, command_id: str) -> dict[str, Any]:
    """The command as the API shows it, else as the ledger holds it."""
    return outcome.api.get(command_id) or outcome.ledger.get(command_id) or {}


def _judge_accepted(
    command_id: str, plan: PlannedCommand, outcome: Outcome, received: int, verdict: Verdict
) -> None:
    row = outcome.ledger.get(command_id)
    seen = outcome.api.get(command_id)
    if row is None and seen is None:
        verdict.add("lost", command_id)
        return
    state = _view(outcome, command_id).get("state", "?")
    verdict.states[state] += 1
    if state not in TERMINAL or (row is not None and row["state"] not in TERMINAL):
        verdict.add("stuck", command_id)
    if row is None:
        verdict.add("missing_from_ledger", command_id)
    else:
        live = outcome.live.get(command_id)
        if live is not None and live != row["state"]:
            verdict.add("mismatched", command_id)
        if outcome.terminal_events.get(command_id, 0) > 1:
            verdict.add("several_terminal_events", command_id)
    if state == "done":
        text = (_view(outcome, command_id).get("response") or {}).get("text")
        if text != plan.expected_text:
            verdict.add("wrong_answer", command_id)
        if received == 0:
            verdict.add("done_without_reaching_device", command_id)

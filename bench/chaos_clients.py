"""The chaos run's clients: a planned mix of commands, submitted over HTTP through the faults.

Every payload is unique, so the simulators' logs witness each command reaching a device:
`ECHO <token>` carries a token of its own, and each `SLEEP <ms>` a length no other has.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any

from bench.harness_http import http

# Shares of the mix. Sleeps are long enough to overrun their timeout about half the time.
SLEEP_SHARE = 0.05
IDEMPOTENT_SHARE = 0.2
EXPIRING_SHARE = 0.03
CANCEL_SHARE = 0.03
SLEEP_MS_RANGE = (100, 900)
SLEEP_TIMEOUT_S = 0.4
ECHO_TIMEOUT_S = 2.0
EXPIRES_S_RANGE = (1.0, 4.0)
# A submission refused for a passing reason (503, no connection, 429) is tried again after
# this pause, until its deadline: a fault is over long before.
RETRY_PAUSE_S = 0.3
SUBMIT_DEADLINE_S = 120.0
REQUEST_TIMEOUT_S = 10.0
# Statuses that mean nothing was created and a retry is in order.
RETRY_STATUSES = (429, 503)


@dataclass
class PlannedCommand:
    """One command the run means to submit, and what became of each submission."""

    index: int
    device: str
    body: dict[str, Any]
    cancel: bool
    idempotency_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Ids the API answered 202 with: more than one means a retry created a second command.
    accepted: list[str] = field(default_factory=list)
    # Every answer that was not a 202, by status ("conn" for no answer at all).
    refusals: dict[str, int] = field(default_factory=dict)
    cancel_status: int | None = None

    @property
    def payload(self) -> str:
        """The line the device receives."""
        return str(self.body["payload"])

    @property
    def is_echo(self) -> bool:
        """Whether the device answers with the payload's token."""
        return self.payload.startswith("ECHO ")

    @property
    def expected_text(self) -> str:
        """What the simulated device answers when it runs this command."""
        return self.payload.removeprefix("ECHO ") if self.is_echo else "OK"


def plan_commands(count: int, devices: list[str], rng: random.Random) -> list[PlannedCommand]:
    """`count` commands spread over `devices`, in the mix the run asks for."""
    sleeps = round(count * SLEEP_SHARE)
    lengths = range(*SLEEP_MS_RANGE)
    sleep_lengths = rng.sample(lengths, min(sleeps, len(lengths)))
    sleep_at = set(rng.sample(range(count), len(sleep_lengths)))
    plans = []
    for index in range(count):
        body: dict[str, Any] = {"kind": "line"}
        if index in sleep_at:
            body["payload"] = f"SLEEP {sleep_lengths.pop()}"
            body["timeout_s"] = SLEEP_TIMEOUT_S
        else:
            body["payload"] = f"ECHO c{index:06d}-{uuid.uuid4().hex[:8]}"
            body["timeout_s"] = ECHO_TIMEOUT_S
        if rng.random() < IDEMPOTENT_SHARE:
            body["idempotent"] = True
        if rng.random() < EXPIRING_SHARE:
            body["expires_s"] = round(rng.uniform(*EXPIRES_S_RANGE), 2)
        cancel = rng.random() < CANCEL_SHARE
        plans.append(PlannedCommand(index, devices[index % len(devices)], body, cancel))
    return plans


class Submitter:
    """Client threads that submit the planned commands at a steady pace, retrying refusals."""

    def __init__(
        self, port: int, token: str, plans: list[PlannedCommand], spread_s: float, threads: int
    ) -> None:
        self.port = port
        self.token = token
        self.plans = plans
        self.spread_s = spread_s
        self.threads = threads
        self._next = 0
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.started_at = 0.0
        self._submitting = 0

    def start(self) -> None:
        """Start the client threads."""
        self.started_at = time.monotonic()
        for number in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"chaos-client-{number}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def done(self) -> bool:
        """Whether every client thread has finished."""
        return not any(thread.is_alive() for thread in self._workers)

    def join(self) -> None:
        """Wait for every client thread."""
        for thread in self._workers:
            thread.join()

    def submitting(self) -> bool:
        """Whether a submission is on its way to the API or back right now."""
        return self._submitting > 0

    def _take(self) -> PlannedCommand | None:
        with self._lock:
            if self._next >= len(self.plans):
                return None
            plan = self.plans[self._next]
            self._next += 1
            return plan

    def _run(self) -> None:
        while (plan := self._take()) is not None:
            # Command i goes out at its slot, so the submissions span the faults.
            slot = self.started_at + plan.index * self.spread_s / len(self.plans)
            time.sleep(max(0.0, slot - time.monotonic()))
            self._submit(plan)

    def _submit(self, plan: PlannedCommand) -> None:
        deadline = time.monotonic() + SUBMIT_DEADLINE_S
        path = f"/api/v1/devices/{plan.device}/commands"
        headers = {"Idempotency-Key": plan.idempotency_key}
        while time.monotonic() < deadline:
            with self._lock:
                self._submitting += 1
            try:
                status, body = self.request("POST", path, plan.body, headers)
            finally:
                with self._lock:
                    self._submitting -= 1
            if status == 202 and isinstance(body, dict):
                plan.accepted.append(str(body["id"]))
                if plan.cancel:
                    plan.cancel_status = self._cancel(str(body["id"]), deadline)
                return
            key = "conn" if status is None else str(status)
            plan.refusals[key] = plan.refusals.get(key, 0) + 1
            if status is not None and status not in RETRY_STATUSES and status < 500:
                return  # refused for good: the harness sent something wrong
            time.sleep(RETRY_PAUSE_S)

    def _cancel(self, command_id: str, deadline: float) -> int | None:
        while time.monotonic() < deadline:
            status, _ = self.request("POST", f"/api/v1/commands/{command_id}/cancel", None, {})
            if status is not None and status not in RETRY_STATUSES:
                return status
            time.sleep(RETRY_PAUSE_S)
        return None

    def request(
        self, method: str, path: str, body: object, headers: dict[str, str]
    ) -> tuple[int | None, Any]:
        """One request on a fresh connection: status and JSON body, or (None, error)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            reply = http(
                method, url, token=self.token, body=body, headers=headers,
                timeout=REQUEST_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, HTTPException) as e:
            return None, repr(e)
        return reply.status, reply.body

"""Concurrent submissions to one device: the order of created_at is the order they run in,
and a retried submission with an Idempotency-Key makes one command, even across API restarts."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from bench.local_stack import Stack

THREADS = 8
PER_THREAD = 40


def test_created_at_order_is_execution_order_under_concurrent_submission(
    stack: Stack, device_name: str
) -> None:
    """Defect: 8 threads submitting 40 commands to one device ran one pair in an order their
    created_at contradicted."""
    stack.add_sim_device(device_name)
    tag = uuid.uuid4().hex[:6]

    def submit_many(thread: int) -> list[str]:
        return [stack.submit(device_name, f"ECHO {tag}-{thread}-{i}") for i in range(PER_THREAD)]

    with ThreadPoolExecutor(THREADS) as pool:
        ids = [i for batch in pool.map(submit_many, range(THREADS)) for i in batch]
    commands = [stack.wait(command_id, 120) for command_id in ids]
    assert {c["state"] for c in commands} == {"done"}
    by_created = sorted(commands, key=lambda c: c["created_at"])
    by_dispatch = sorted(commands, key=lambda c: c["dispatched_at"])
    assert [c["id"] for c in by_created] == [c["id"] for c in by_dispatch]
    assert len({c["created_at"] for c in commands}) == len(commands), "two share a created_at"
    ran = [line.split(" ", 2)[2] for line in stack.sim_log(device_name).splitlines()]
    assert [c["payload"] for c in by_created] == [f"ECHO {p}" for p in ran if p.startswith(tag)]


def test_a_submission_repeated_with_its_idempotency_key_makes_one_command(
    stack: Stack, device_name: str
) -> None:
    """An optional Idempotency-Key lets a client retry a submit (after a 503, a timeout) safely."""
    stack.add_sim_device(device_name)
    key = {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    body = {"kind": "line", "payload": "ECHO once-only"}
    path = f"/devices/{device_name}/commands"
    first = stack.request("POST", path, body=body, headers=key)
    assert first.status == 202, first.body
    stack.stop("api")
    stack.spawn("api", "api", "--host", "127.0.0.1", "--port", str(stack.api_port))
    stack.wait_for(lambda: stack.request("GET", "/health").status == 200, "the API again")
    again = stack.request("POST", path, body=body, headers=key)
    assert again.status == 202, again.body
    assert again.body["id"] == first.body["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert stack.wait(first.body["id"])["state"] == "done"
    assert stack.sim_log(device_name).count("ECHO once-only") == 1

    changed = stack.request("POST", path, body={**body, "payload": "ECHO other"}, headers=key)
    assert changed.status == 422, changed.body
    too_long = stack.request("POST", path, body=body, headers={"Idempotency-Key": "k" * 256})
    assert too_long.status == 422
    assert too_long.body["errors"][0]["field"] == "Idempotency-Key"

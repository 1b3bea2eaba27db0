"""`POST /devices/{name}/commands?wait=S`: submit and wait in one request (DESIGN §3)."""

from __future__ import annotations

import uuid

from bench.local_stack import Stack


def _submit(stack: Stack, device: str, payload: str, wait: float, **headers: str) -> object:
    body = {"kind": "line", "payload": payload, "timeout_s": 10}
    return stack.request(
        "POST", f"/devices/{device}/commands?wait={wait:g}", body=body, headers=headers
    )


def test_a_command_that_settles_within_the_wait_is_answered_200_done(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)

    reply = _submit(stack, device_name, "*IDN?", 20)

    assert reply.status == 200, reply.body
    assert reply.body["state"] == "done"
    assert reply.body["response"]["text"].startswith("HWQ,SIM")
    assert reply.headers["Location"] == f"/api/v1/commands/{reply.body['id']}"
    # The Location reads the same command.
    assert (
        stack.request("GET", reply.headers["Location"].removeprefix("/api/v1")).body["state"]
        == "done"
    )


def test_a_command_still_running_when_the_wait_ends_is_answered_202_as_it_stands(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)

    reply = _submit(stack, device_name, "SLEEP 3000", 0.5)

    assert reply.status == 202, reply.body
    assert reply.body["state"] in ("queued", "dispatched")
    assert reply.headers["Location"] == f"/api/v1/commands/{reply.body['id']}"
    assert stack.wait(reply.body["id"])["state"] == "done"


def test_a_command_to_a_device_without_worker_waits_then_answers_202_queued(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)

    reply = _submit(stack, device_name, "*IDN?", 1)

    assert reply.status == 202, reply.body
    assert reply.body["state"] == "queued"
    stack.request("POST", f"/commands/{reply.body['id']}/cancel")


def test_an_idempotency_key_with_wait_answers_the_same_command_both_times(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    key = uuid.uuid4().hex

    first = _submit(stack, device_name, "ECHO once", 20, **{"Idempotency-Key": key})
    again = _submit(stack, device_name, "ECHO once", 20, **{"Idempotency-Key": key})

    assert (first.status, again.status) == (200, 200), (first.body, again.body)
    assert again.body["id"] == first.body["id"]
    assert again.body["response"] == {"text": "once"}
    assert again.headers["Location"] == first.headers["Location"]
    assert "ECHO once" in stack.sim_log(device_name)
    assert stack.sim_log(device_name).count("ECHO once") == 1


def test_a_refused_submission_with_wait_is_its_problem(stack: Stack, device_name: str) -> None:
    unknown = stack.request(
        "POST", f"/devices/{device_name}/commands?wait=5", body={"kind": "line", "payload": "x"}
    )
    assert unknown.status == 404, unknown.body

    stack.add_sim_device(device_name, worker=False)
    too_long = stack.request(
        "POST", f"/devices/{device_name}/commands?wait=61", body={"kind": "line", "payload": "x"}
    )
    assert too_long.status == 422, too_long.body
    assert [e["field"] for e in too_long.body["errors"]] == ["wait"]


def test_openapi_documents_both_answers_of_a_submission(stack: Stack) -> None:
    document = stack.request("GET", "/openapi.json").body
    operation = document["paths"]["/api/v1/devices/{name}/commands"]["post"]

    assert {"200", "202"} <= set(operation["responses"])
    assert "wait" in [p["name"] for p in operation["parameters"]]

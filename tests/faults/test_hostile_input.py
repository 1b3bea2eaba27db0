"""Hostile and careless input over HTTP: refused with 422 naming the field, never a 500 later.

Guards against: a 980-deep `analysis.params` accepted and then every history listing failing
with a RecursionError; unknown query parameters accepted on routes that take none; analyzer
params of the wrong type accepted and ending as an error verdict; `/` answering a problem of
type `about:blank`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
import redis

from bench.harness_http import Reply, http
from bench.local_stack import Stack
from tasks.json_bounds import MAX_JSON_BYTES, MAX_JSON_DEPTH, UNREADABLE_VALUE

NOT_FOUND_TYPE = "https://hwq.dev/problems/not-found"
# As deep as the report's: Python's json still parses it, the readers after it did not.
HOSTILE_DEPTH = 980


class Nested:
    """Arrays nested `depth` deep, written into a body as JSON text.

    Python's encoder recurses once per level too: on the test's deep stack it cannot write
    what the API must refuse, so the text is spliced in.
    """

    def __init__(self, depth: int) -> None:
        self.text = "[" * depth + "1" + "]" * depth


def body_bytes(body: dict[str, Any]) -> bytes:
    """`body` as JSON, with each Nested in it spelled out."""
    spliced: list[str] = []

    def mark(value: object) -> str:
        assert isinstance(value, Nested)
        spliced.append(value.text)
        return f"@nested{len(spliced) - 1}@"

    text = json.dumps(body, default=mark)
    for index, nested_text in enumerate(spliced):
        text = text.replace(f'"@nested{index}@"', nested_text)
    return text.encode()


def nested(depth: int) -> Nested:
    """A value of arrays nested `depth` deep."""
    return Nested(depth)


def send(stack: Stack, method: str, path: str, body: dict[str, Any]) -> Reply:
    """A request whose body may hold Nested values."""
    return stack.request(method, path, raw=body_bytes(body))


def field_problems(reply: Reply) -> dict[str, str]:
    """The fields a 422 problem names, with their messages."""
    assert reply.status == 422, (reply.status, reply.body)
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.body["type"] == "https://hwq.dev/problems/validation-failed"
    return {str(e["field"]): str(e["message"]) for e in reply.body["errors"]}


def ensure_device(stack: Stack, name: str, worker: bool = True) -> None:
    """A simulated device of this module's, registered once."""
    if stack.request("GET", f"/devices/{name}").status == 404:
        stack.add_sim_device(name, worker=worker)


def submit(stack: Stack, device: str, **fields: Any) -> Reply:
    body = {"kind": "line", "payload": "MEAS:VOLT?", **fields}
    return send(stack, "POST", f"/devices/{device}/commands", body)


def test_deeply_nested_params_are_refused_and_history_stays_readable(
    stack: Stack, device_name: str
) -> None:
    stack.add_sim_device(device_name, worker=False)
    for analysis in (
        {"analyzer": "number", "params": {"min": nested(HOSTILE_DEPTH)}},
        {"analyzer": "equals", "params": {"expected": "x", "note": nested(HOSTILE_DEPTH)}},
    ):
        # Refused before it is decoded: far deeper than any field may nest.
        problems = field_problems(submit(stack, device_name, analysis=analysis))
        assert set(problems) == {"body"}, problems
        assert "levels" in problems["body"]
    for analysis in (
        {"analyzer": "number", "params": {"min": nested(40)}},
        {"analyzer": "equals", "params": {"expected": "x", "note": nested(40)}},
    ):
        problems = field_problems(submit(stack, device_name, analysis=analysis))
        assert set(problems) <= {"analysis.params.min", "analysis.params.note"}, problems
    history = stack.request("GET", "/commands")
    assert history.status == 200, history.body
    assert stack.request("GET", f"/commands?device={device_name}").body["items"] == []


def test_free_form_fields_are_bounded_in_depth_and_size(stack: Stack, device_name: str) -> None:
    deep = send(stack, "POST", "/devices", {"name": device_name, "options": {"x": nested(980)}})
    assert "levels" in field_problems(deep)["body"]
    deeper_than_a_field = send(
        stack, "POST", "/devices", {"name": device_name, "options": {"x": nested(40)}}
    )
    assert "levels" in field_problems(deeper_than_a_field)["options"]
    large = {"x": "a" * (MAX_JSON_BYTES + 1)}
    assert "bytes" in field_problems(stack.request("POST", "/devices", body={
        "name": device_name, "options": large}))["options"]  # fmt: skip
    stack.add_sim_device(device_name)
    patch = send(stack, "PATCH", f"/devices/{device_name}", {"options": {"x": nested(40)}})
    assert "options" in field_problems(patch)
    # Exactly at the bound is accepted: the bound is a limit, not a ban on structure.
    at_bound = {"options": {"x": nested(MAX_JSON_DEPTH - 1)}}
    assert send(stack, "PATCH", f"/devices/{device_name}", at_bound).status == 200

    command = submit(stack, device_name, analysis={"analyzer": "manual"})
    assert command.status == 202, command.body
    responded = stack.wait(command.body["id"])
    assert responded["state"] == "responded", responded
    path = f"/commands/{responded['id']}/analysis"
    assert "body" in field_problems(send(stack, "POST", path, {"value": nested(HOSTILE_DEPTH)}))
    assert "value" in field_problems(send(stack, "POST", path, {"value": nested(40)}))
    assert "value" in field_problems(stack.request("POST", path, body={"value": large}))
    done = stack.request("POST", path, body={"value": {"ok": True}})
    assert done.status == 200 and done.body["state"] == "done", done.body
    assert stack.request("GET", "/commands").status == 200


def test_a_stored_value_too_deep_does_not_break_the_listing(stack: Stack, device_name: str) -> None:
    """Defence in depth: a row written before the bound existed must not fail every listing."""
    stack.add_sim_device(device_name, worker=False)
    command_id = stack.submit(device_name, "ECHO x")
    assert stack.request("POST", f"/commands/{command_id}/cancel").status == 200
    deep = body_bytes({"analyzer": "manual", "params": {}, "value": nested(HOSTILE_DEPTH)}).decode()
    with sqlite3.connect(stack.home / "hwq.db", timeout=30) as db:
        # Once the recorder has the cancel, nothing writes the row again.
        stack.wait_for(
            lambda: (
                db.execute("SELECT state FROM commands WHERE id = ?", (command_id,)).fetchone()
                == ("cancelled",)
            ),
            "the recorded cancel",
        )
        db.execute("UPDATE commands SET analysis = ? WHERE id = ?", (deep, command_id))
    # The ledger is read once Redis no longer holds the command's live state.
    forget_live_state(stack, command_id)
    listing = stack.request("GET", f"/commands?device={device_name}")
    assert listing.status == 200, listing.body
    (item,) = listing.body["items"]
    assert item["id"] == command_id and item["analysis"] == UNREADABLE_VALUE
    assert stack.request("GET", "/commands").status == 200
    one = stack.request("GET", f"/commands/{command_id}")
    assert one.status == 200 and one.body["analysis"] == UNREADABLE_VALUE


def forget_live_state(stack: Stack, command_id: str) -> None:
    """Drop a command's live state, as Redis does a day after it finished."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{stack.key_prefix}:*{command_id}*"))
        assert keys, "the command has live state to drop"
        client.delete(*keys)
    finally:
        client.close()


@pytest.mark.parametrize(
    "path",
    ["/devices", "/devices/{device}", "/commands/{command}/events", "/commands/{command}",
     "/commands", "/health", "/openapi.json"],
)  # fmt: skip
def test_unknown_query_parameters_are_refused_on_every_route(stack: Stack, path: str) -> None:
    ensure_device(stack, "qp", worker=False)
    command_id = stack.submit("qp", "ECHO x")
    url = path.format(device="qp", command=command_id)
    known = stack.request("GET", url)
    assert known.status == 200, known.body
    unknown = stack.request("GET", f"{url}?colour=red")
    assert field_problems(unknown) == {"colour": unknown.body["errors"][0]["message"]}
    stack.request("POST", f"/commands/{command_id}/cancel")


def test_unknown_paths_answer_a_typed_not_found_problem(stack: Stack) -> None:
    for path in ("/", "/api/v1", "/api/v1/nothing-here"):
        reply = http("GET", f"http://127.0.0.1:{stack.api_port}{path}")
        assert reply.status == 404, (path, reply.body)
        assert reply.headers["Content-Type"] == "application/problem+json"
        assert reply.body["type"] == NOT_FOUND_TYPE, (path, reply.body)


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"analyzer": "number", "params": {"min": "abc"}}, "analysis.params.min"),
        ({"analyzer": "number", "params": {"max": True}}, "analysis.params.max"),
        ({"analyzer": "number", "params": {"min": 2, "max": 1}}, "analysis.params.max"),
        ({"analyzer": "number", "params": {"minimum": 1}}, "analysis.params.minimum"),
        ({"analyzer": "regex", "params": {"pattern": "("}}, "analysis.params.pattern"),
        ({"analyzer": "regex", "params": {"pattern": 5}}, "analysis.params.pattern"),
        ({"analyzer": "regex", "params": {"pattern": "a" * 1025}}, "analysis.params.pattern"),
        ({"analyzer": "regex", "params": {}}, "analysis.params.pattern"),
        ({"analyzer": "equals", "params": {"expected": ["x"]}}, "analysis.params.expected"),
        ({"analyzer": "manual", "params": {"x": 1}}, "analysis.params.x"),
        ({"analyzer": "median"}, "analysis.analyzer"),
    ],
)
def test_analyzer_params_are_checked_at_submission(
    stack: Stack, analysis: dict[str, Any], field: str
) -> None:
    ensure_device(stack, "params")
    problems = field_problems(submit(stack, "params", analysis=analysis))
    assert list(problems) == [field], problems


def test_valid_analyzer_params_still_give_a_verdict(stack: Stack) -> None:
    ensure_device(stack, "params")
    number = submit(stack, "params", analysis={"analyzer": "number", "params": {"min": 0}})
    assert number.status == 202, number.body
    done = stack.wait(number.body["id"])
    assert done["state"] == "done" and done["analysis"]["params"] == {"min": 0}
    assert done["analysis"]["value"]["within"] is True, done
    equals = submit(stack, "params", payload="ECHO 5", analysis={
        "analyzer": "equals", "params": {"expected": 5}})  # fmt: skip
    assert stack.wait(equals.body["id"])["analysis"]["value"] == {"equal": True, "passed": True}


def test_the_cli_shows_a_bad_param_as_the_apis_422(stack: Stack) -> None:
    ensure_device(stack, "params")
    env = {**os.environ, "HWQ_URL": f"http://127.0.0.1:{stack.api_port}",
           "HWQ_TOKEN": stack.admin_token, "HWQ_HOME": str(stack.home)}  # fmt: skip
    before = stack.request("GET", "/commands?device=params&limit=500").body["items"]
    result = subprocess.run(
        [sys.executable, "-m", "hwq.cli", "run", "params", "MEAS:VOLT?",
         "--analysis", "number", "--param", "min=abc", "--param", "max=2"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "422" in result.stderr and "analysis.params.min" in result.stderr, result.stderr
    after = stack.request("GET", "/commands?device=params&limit=500").body["items"]
    assert len(after) == len(before), "nothing was queued"
    # A number given to --param is sent as a number.
    ok = subprocess.run(
        [sys.executable, "-m", "hwq.cli", "run", "params", "MEAS:VOLT?",
         "--analysis", "number", "--param", "min=0", "--param", "max=1e9"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert '"within": true' in ok.stderr


def test_python_on_a_device_that_does_not_allow_it_is_a_409(stack: Stack, device_name: str) -> None:
    """The refusal depends on the device's settings, not the body: a conflict, as documented."""
    stack.add_sim_device(device_name, worker=False)
    body = {"kind": "python", "payload": "print(1)"}
    refused = stack.request("POST", f"/devices/{device_name}/commands", body=body)
    assert refused.status == 409, refused.body
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert "options.python" in refused.body["detail"]
    allowed = {"options": {"python": True}}
    assert stack.request("PATCH", f"/devices/{device_name}", body=allowed).status == 200
    accepted = stack.request("POST", f"/devices/{device_name}/commands", body=body)
    assert accepted.status == 202, accepted.body
    assert stack.request("POST", f"/commands/{accepted.body['id']}/cancel").status == 200

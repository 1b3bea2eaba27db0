"""api.schemas and api.openapi: strict request validation and the OpenAPI document built from it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from pydantic import BaseModel, ValidationError

from api import create_app
from api.inputs import field_errors
from api.openapi import build_openapi
from api.schemas import (
    AnalysisSubmit,
    CommandListQuery,
    CommandSubmit,
    CommandWaitQuery,
    DeviceCreate,
    DeviceUpdate,
)
from config import Settings
from tasks.lifecycle import State


def _errors(model: type[BaseModel], data: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {
        str(error["field"]): str(error["message"]) for error in field_errors(caught.value, data)
    }


def _command(**fields: Any) -> dict[str, Any]:
    return CommandSubmit.model_validate(fields).model_dump()


# --- devices -------------------------------------------------------------------------------------


def test_device_create_fills_the_documented_defaults() -> None:
    assert DeviceCreate.model_validate({"name": "sim0"}).model_dump() == {
        "name": "sim0",
        "transport": "serial",
        "address": None,
        "baudrate": 115200,
        "codec": "line",
        "options": {},
        "host": None,
    }


@pytest.mark.parametrize("name", ["a", "sim0", "bench_psu-2", "0" + "x" * 62])
def test_device_names_that_can_be_queue_names_are_accepted(name: str) -> None:
    assert DeviceCreate.model_validate({"name": name}).name == name


@pytest.mark.parametrize("name", ["", "Sim0", "-sim", "_sim", "sim 0", "sim.0", "x" * 64, "ü"])
def test_other_device_names_are_refused(name: str) -> None:
    assert "name" in _errors(DeviceCreate, {"name": name})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("baudrate", "9600"),  # no text for numbers
        ("baudrate", True),  # no booleans for numbers
        ("baudrate", 9600.5),
        ("baudrate", 299),
        ("baudrate", 4_000_001),
        ("transport", "tcp"),
        ("codec", "json"),
        ("options", []),
        ("address", 5),
        ("colour", "red"),  # unknown field
    ],
)
def test_device_create_fields_are_strict(field: str, value: Any) -> None:
    assert field in _errors(DeviceCreate, {"name": "sim0", field: value})


def test_device_update_reports_only_the_fields_sent() -> None:
    update = DeviceUpdate.model_validate({"name": "renamed", "address": None})
    assert update.model_dump(exclude_unset=True) == {"name": "renamed", "address": None}
    assert DeviceUpdate.model_validate({}).model_dump(exclude_unset=True) == {}


@pytest.mark.parametrize("field", ["name", "transport", "baudrate", "codec", "options"])
def test_device_update_cannot_null_a_required_setting(field: str) -> None:
    assert "may not be null" in _errors(DeviceUpdate, {field: None})[field]


# --- commands ------------------------------------------------------------------------------------


def test_a_line_command_gets_every_default() -> None:
    assert _command(kind="line", payload="*IDN?") == {
        "kind": "line",
        "payload": "*IDN?",
        "timeout_s": 5.0,
        "expires_s": None,
        "idempotent": False,
        "analysis": None,
        "read": None,
    }


def test_every_kind_accepts_its_own_payload() -> None:
    assert _command(kind="raw", payload="AAEC/w==", read={"until": "Cg==", "idle_ms": 50})[
        "read"
    ] == {"until": "Cg==", "bytes": None, "idle_ms": 50}
    frame = _command(kind="frame", payload={"command_id": 255, "args": [-(2**31), 2**31 - 1]})
    assert frame["payload"] == {"command_id": 255, "args": [-(2**31), 2**31 - 1]}
    assert _command(kind="frame", payload={"command_id": 0})["payload"]["args"] == []
    assert _command(kind="python", payload="print(1)\nprint(2)")["payload"] == "print(1)\nprint(2)"
    analysed = _command(kind="line", payload="MEAS:VOLT?", analysis={"analyzer": "number"})
    assert analysed["analysis"] == {"analyzer": "number", "params": {}}


def test_whole_numbers_are_accepted_for_seconds() -> None:
    assert _command(kind="line", payload="x", timeout_s=300, expires_s=1)["timeout_s"] == 300.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "line", "payload": "a\nb"}, "payload"),
        ({"kind": "line", "payload": "a\r"}, "payload"),
        ({"kind": "line", "payload": "x" * 4097}, "payload"),
        ({"kind": "line", "payload": 5}, "payload"),
        ({"kind": "raw", "payload": "not base64!"}, "payload"),
        ({"kind": "raw", "payload": "AAE"}, "payload"),  # unpadded
        ({"kind": "frame", "payload": "01 02"}, "payload"),
        ({"kind": "frame", "payload": {"command_id": 256}}, "payload.command_id"),
        ({"kind": "frame", "payload": {"command_id": -1}}, "payload.command_id"),
        ({"kind": "frame", "payload": {"command_id": True}}, "payload.command_id"),
        ({"kind": "frame", "payload": {"command_id": 1, "args": [2**31]}}, "payload.args.0"),
        ({"kind": "frame", "payload": {"command_id": 1, "args": [0, False]}}, "payload.args.1"),
        ({"kind": "frame", "payload": {"command_id": 1, "args": [0] * 65}}, "payload.args"),
        ({"kind": "frame", "payload": {"command_id": 1, "crc": 0}}, "payload.crc"),
        ({"kind": "python", "payload": ["print(1)"]}, "payload"),
        ({"kind": "line"}, "payload"),
        ({"kind": "line", "payload": "x", "timeout_s": 0}, "timeout_s"),
        ({"kind": "line", "payload": "x", "timeout_s": 300.5}, "timeout_s"),
        ({"kind": "line", "payload": "x", "timeout_s": "5"}, "timeout_s"),
        ({"kind": "line", "payload": "x", "timeout_s": True}, "timeout_s"),
        ({"kind": "line", "payload": "x", "timeout_s": float("nan")}, "timeout_s"),
        ({"kind": "line", "payload": "x", "expires_s": 0}, "expires_s"),
        ({"kind": "line", "payload": "x", "idempotent": 1}, "idempotent"),
        ({"kind": "line", "payload": "x", "analysis": {"analyzer": ""}}, "analysis.analyzer"),
        ({"kind": "line", "payload": "x", "analysis": {"params": {}}}, "analysis.analyzer"),
        ({"kind": "raw", "payload": "", "read": {"bytes": 0}}, "read.bytes"),
        ({"kind": "raw", "payload": "", "read": {"bytes": 1_048_577}}, "read.bytes"),
        ({"kind": "raw", "payload": "", "read": {"idle_ms": 60_001}}, "read.idle_ms"),
        ({"kind": "raw", "payload": "", "read": {"until": "?"}}, "read.until"),
        ({"kind": "raw", "payload": "", "read": {"until": ""}}, "read.until"),
        ({"kind": "line", "payload": "x", "priority": 1}, "priority"),
    ],
)
def test_invalid_commands_name_the_field_at_fault(body: dict[str, Any], field: str) -> None:
    assert field in _errors(CommandSubmit, body)


def test_a_missing_or_unknown_kind_is_reported_as_the_kind_field() -> None:
    assert _errors(CommandSubmit, {"payload": "x"}) == {"kind": "Field required"}
    assert "'line', 'raw', 'frame', 'python'" in _errors(CommandSubmit, {"kind": "x"})["kind"]


def test_analysis_takes_any_value_but_needs_one() -> None:
    assert AnalysisSubmit.model_validate({"value": None}).value is None
    assert AnalysisSubmit.model_validate({"value": {"ok": [1]}}).value == {"ok": [1]}
    assert "value" in _errors(AnalysisSubmit, {})


# --- query strings -------------------------------------------------------------------------------


def test_command_list_query_reads_text_values() -> None:
    cursor = "1764423125123456.0e1012f8-c87e-444a-8302-9746fedc34ed"
    query = CommandListQuery.model_validate(
        {"state": "timed_out", "limit": "500", "cursor": cursor}
    )
    assert (query.state, query.limit, query.cursor, query.device) == (
        State.TIMED_OUT,
        500,
        cursor,
        None,
    )
    assert CommandListQuery.model_validate({}).limit == 50


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "finished"}, "state"),
        ({"device": "Not A Device"}, "device"),
        ({"page": "2"}, "page"),
    ],
)
def test_command_list_query_bounds(args: dict[str, str], field: str) -> None:
    assert field in _errors(CommandListQuery, args)


@pytest.mark.parametrize("wait", ["-1", "60.5", "soon", "nan", "inf"])
def test_wait_is_a_number_of_seconds_up_to_sixty(wait: str) -> None:
    assert "wait" in _errors(CommandWaitQuery, {"wait": wait})


def test_wait_accepts_fractions_and_zero() -> None:
    assert CommandWaitQuery.model_validate({"wait": "2.5"}).wait == 2.5
    assert CommandWaitQuery.model_validate({"wait": "0"}).wait == 0


# --- the OpenAPI document ------------------------------------------------------------------------

# DESIGN §3, plus the document and the docs page with its files.
CONTRACT_ROUTES = {
    ("/api/v1/health", "get"),
    ("/api/v1/devices", "get"),
    ("/api/v1/devices", "post"),
    ("/api/v1/devices/{name}", "get"),
    ("/api/v1/devices/{name}", "patch"),
    ("/api/v1/devices/{name}", "delete"),
    ("/api/v1/devices/{name}/commands", "post"),
    ("/api/v1/devices/{name}/stream", "get"),
    ("/api/v1/commands", "get"),
    ("/api/v1/commands/{command_id}", "get"),
    ("/api/v1/commands/{command_id}/cancel", "post"),
    ("/api/v1/commands/{command_id}/analysis", "post"),
    ("/api/v1/commands/{command_id}/events", "get"),
    ("/api/v1/devices/{name}/activate", "post"),
    ("/api/v1/devices/{name}/deactivate", "post"),
    ("/api/v1/hosts", "get"),
    ("/api/v1/hosts/{host}/ports", "get"),
    ("/api/v1/tokens", "get"),
    ("/api/v1/metrics", "get"),
    ("/metrics", "get"),
    ("/api/v1/tokens/{token_id}", "delete"),
    ("/api/v1/openapi.json", "get"),
    ("/api/v1/docs", "get"),
    ("/api/v1/docs/{asset}", "get"),
    ("/api/v1/whoami", "get"),
    ("/", "get"),
    ("/console/{asset}", "get"),
    ("/api/v1/devices/{name}/next", "get"),
    ("/api/v1/commands/{command_id}/response", "post"),
    ("/api/v1/legacy", "get"),
    ("/api/v1/legacy", "post"),
}


@pytest.fixture
def app() -> Flask:
    # No route is called: the document is built from the routes and models alone.
    return create_app({"TESTING": True, "HWQ_SETTINGS": Settings()}, service=object())  # type: ignore[arg-type]


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    return build_openapi(app)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_route_and_method_is_documented(app: Flask, document: dict[str, Any]) -> None:
    routes = {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == routes == CONTRACT_ROUTES


def test_the_document_serves_as_json(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.get_json()["openapi"] == "3.1.0"


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)
    assert "$defs" not in str(document)


def test_request_bodies_use_the_validating_models(document: dict[str, Any]) -> None:
    paths = document["paths"]
    bodies = {
        (path, method): op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for path, ops in paths.items()
        for method, op in ops.items()
        if "requestBody" in op
    }
    assert bodies == {
        ("/api/v1/devices", "post"): "#/components/schemas/DeviceCreate",
        ("/api/v1/devices/{name}", "patch"): "#/components/schemas/DeviceUpdate",
        ("/api/v1/devices/{name}/commands", "post"): "#/components/schemas/CommandSubmit",
        ("/api/v1/commands/{command_id}/analysis", "post"): "#/components/schemas/AnalysisSubmit",
        ("/api/v1/commands/{command_id}/response", "post"): "#/components/schemas/PollReply",
    }
    schemas = document["components"]["schemas"]
    assert schemas["DeviceCreate"] == DeviceCreate.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    submit = schemas["CommandSubmit"]
    assert submit["discriminator"]["propertyName"] == "kind"
    assert set(submit["discriminator"]["mapping"]) == {"line", "raw", "frame", "python"}
    assert schemas["FramePayload"]["properties"]["command_id"]["maximum"] == 255


def test_operations_state_their_role_and_security(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/api/v1/health"]["get"]["security"] == []
    assert paths["/api/v1/docs"]["get"]["security"] == []
    assert paths["/api/v1/devices"]["post"]["x-hwq-role"] == "admin"
    assert paths["/api/v1/devices/{name}/commands"]["post"]["x-hwq-role"] == "operator"
    assert paths["/api/v1/commands"]["get"]["x-hwq-role"] == "viewer"
    assert paths["/api/v1/commands"]["get"]["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operation_ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_responses_and_parameters_match_the_contract(document: dict[str, Any]) -> None:
    paths = document["paths"]
    submit = paths["/api/v1/devices/{name}/commands"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "413", "422", "429", "503"} <= set(submit)
    assert set(paths["/api/v1/devices/{name}"]["delete"]["responses"]) >= {"204", "409"}
    assert "content" not in paths["/api/v1/devices/{name}"]["delete"]["responses"]["204"]
    assert paths["/api/v1/health"]["get"]["responses"]["503"]["content"]["application/json"] == {
        "schema": {"$ref": "#/components/schemas/Health"}
    }
    listing = {p["name"]: p for p in paths["/api/v1/commands"]["get"]["parameters"]}
    assert set(listing) == {"device", "state", "limit", "cursor"}
    assert listing["limit"]["schema"]["maximum"] == 500
    name = paths["/api/v1/devices/{name}"]["get"]["parameters"][0]
    assert name["in"] == "path" and name["schema"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,62}$"
    problem = document["components"]["responses"]["QueueFull"]["content"]
    assert problem == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }


def test_the_docs_pages_files_are_documented_by_name(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/docs/{asset}"]["get"]
    assert operation["security"] == []
    names = operation["parameters"][0]["schema"]["enum"]
    assert {"swagger-ui.css", "swagger-ui-bundle.js"} <= set(names)


def test_every_operation_documents_the_422_for_unknown_query_parameters(
    document: dict[str, Any],
) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" in operation["responses"], (path, method)


def test_the_document_refuses_what_the_server_refuses(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    update = schemas["DeviceUpdate"]["properties"]
    for name in ("name", "transport", "baudrate", "codec", "options"):
        assert "null" not in json.dumps(update[name]), name
    assert {"type": "null"} in update["address"]["anyOf"]
    assert schemas["LineCommand"]["properties"]["payload"]["pattern"] == "^[^\\r\\n]*$"
    assert "pattern" in schemas["RawCommand"]["properties"]["payload"]
    assert set(schemas["CommandSubmit"]["discriminator"]["mapping"]) == {
        "line", "raw", "frame", "python"
    }  # fmt: skip
    analysis = schemas["LineCommand"]["properties"]["analysis"]["anyOf"][0]
    assert set(analysis["discriminator"]["mapping"]) == {
        "manual",
        "number",
        "regex",
        "equals",
        "json",
        "expect",
    }
    assert schemas["RegexParams"]["properties"]["pattern"]["format"] == "regex"
    submit = document["paths"]["/api/v1/devices/{name}/commands"]["post"]["responses"]
    assert "409" in submit  # python to a device that does not allow it
    listing = {p["name"]: p for p in document["paths"]["/api/v1/commands"]["get"]["parameters"]}
    assert "pattern" in json.dumps(listing["cursor"]["schema"])


def test_whole_numbers_written_with_a_fraction_are_integers() -> None:
    assert DeviceCreate.model_validate({"name": "d", "baudrate": 9600.0}).baudrate == 9600
    frame = _command(kind="frame", payload={"command_id": 2.0, "args": [5.0, -7]})
    assert frame["payload"] == {"command_id": 2, "args": [5, -7]}
    assert "baudrate" in _errors(DeviceCreate, {"name": "d", "baudrate": 9600.5})


def test_submission_documents_its_idempotency_key_header(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/devices/{name}/commands"]["post"]
    headers = [p for p in operation["parameters"] if p["in"] == "header"]
    assert [h["name"] for h in headers] == ["Idempotency-Key"]
    assert headers[0]["schema"]["maxLength"] == 255
    assert "422" in operation["responses"]

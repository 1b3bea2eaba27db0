"""tasks.json_bounds and tasks.analysis_params: free-form JSON bounded, analyzer params declared."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from api.inputs import field_errors
from api.schemas import AnalysisSubmit, CommandSubmit, DeviceCreate
from tasks.analysis import ANALYZERS, MANUAL, check_analysis_request
from tasks.analyzer_registry import ANALYZER_NAMES
from tasks.errors import ValidationFailed
from tasks.json_bounds import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    UNREADABLE_VALUE,
    decode_stored_json,
    exceeds_depth,
)


def nested_text(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ([], 1), ({}, 1), ({"a": [1, {"b": []}]}, 4), ([[1], [[2]]], 3)],
)
def test_depth_counts_objects_and_arrays(value: Any, depth: int) -> None:
    assert not exceeds_depth(value, depth)
    assert exceeds_depth(value, depth - 1) == (depth > 0)


def test_depth_is_measured_without_recursion() -> None:
    # Far deeper than Python's recursion limit: a recursive walk would raise.
    value: Any = 1
    for _ in range(50_000):
        value = [value]
    assert exceeds_depth(value)


def test_a_stored_value_too_deep_reads_as_unreadable() -> None:
    assert decode_stored_json(nested_text(MAX_JSON_DEPTH)) == json.loads(
        nested_text(MAX_JSON_DEPTH)
    )
    assert decode_stored_json(nested_text(MAX_JSON_DEPTH + 1)) == UNREADABLE_VALUE
    # So deep that json itself gives up, and as bytes, as psycopg hands JSON over.
    assert decode_stored_json(nested_text(100_000).encode()) == UNREADABLE_VALUE
    # Brackets inside strings are only text.
    assert decode_stored_json(json.dumps({"a": "[" * 100})) == {"a": "[" * 100}


def _problems(model: Any, data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return {str(e["field"]): str(e["message"]) for e in field_errors(caught.value, data)}


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (DeviceCreate, {"name": "d", "options": {"x": json.loads(nested_text(32))}}, "options"),
        (DeviceCreate, {"name": "d", "options": {"x": "a" * MAX_JSON_BYTES}}, "options"),
        (AnalysisSubmit, {"value": json.loads(nested_text(33))}, "value"),
        (AnalysisSubmit, {"value": ["é" * (MAX_JSON_BYTES // 2)]}, "value"),
    ],
)
def test_free_form_fields_are_bounded(model: Any, data: dict[str, Any], field: str) -> None:
    assert field in _problems(model, data)


def test_free_form_fields_up_to_the_bounds_are_accepted() -> None:
    at_depth = {"x": json.loads(nested_text(MAX_JSON_DEPTH - 1))}
    assert DeviceCreate.model_validate({"name": "d", "options": at_depth}).options == at_depth
    assert AnalysisSubmit.model_validate({"value": "a" * (MAX_JSON_BYTES - 2)}).value


def test_every_registered_analyzer_declares_its_params() -> None:
    assert set(ANALYZER_NAMES) == {MANUAL, *ANALYZERS}


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"analyzer": "number", "params": {"min": "abc"}}, "analysis.params.min"),
        ({"analyzer": "number", "params": {"min": 1, "max": 0.5}}, "analysis.params.max"),
        ({"analyzer": "regex", "params": {"pattern": "[a-"}}, "analysis.params.pattern"),
        ({"analyzer": "equals", "params": {"expected": {"a": 1}}}, "analysis.params.expected"),
        ({"analyzer": "equals", "params": {}}, "analysis.params.expected"),
        ({"analyzer": "manual", "params": {"note": "x"}}, "analysis.params.note"),
        ({"analyzer": "nope"}, "analysis.analyzer"),
        ({"params": {}}, "analysis.analyzer"),
    ],
)
def test_bad_params_are_refused_naming_the_param(analysis: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_analysis_request(analysis)
    assert [error["field"] for error in caught.value.errors] == [field]
    body = {"kind": "line", "payload": "x", "analysis": analysis}
    assert list(_problems(CommandSubmit, body)) == [field]


def test_params_are_kept_as_sent() -> None:
    def submitted(analysis: dict[str, Any]) -> Any:
        body = {"kind": "line", "payload": "x", "analysis": analysis}
        return CommandSubmit.model_validate(body).model_dump()["analysis"]

    assert submitted({"analyzer": "number", "params": {"max": 2}}) == {
        "analyzer": "number",
        "params": {"max": 2},
    }
    assert submitted({"analyzer": "manual"}) == {"analyzer": "manual", "params": {}}
    assert submitted({"analyzer": "equals", "params": {"expected": 5}})["params"] == {"expected": 5}
    assert submitted({"analyzer": "regex", "params": {"pattern": "^HWQ,(\\w+)"}})["params"] == {
        "pattern": "^HWQ,(\\w+)"
    }

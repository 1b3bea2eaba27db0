"""The built-in analyzers' verdicts, and which entry points the registry takes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tasks.analysis import run_analyzer
from tasks.analyzer_registry import ENTRY_POINT_GROUP, _discover
from tasks.analyzers import BUILT_IN_ANALYZERS, NUMBER


def _verdict(analyzer: str, params: dict[str, Any], text: str) -> Any:
    return run_analyzer({"analyzer": analyzer, "params": params}, {"text": text})


@pytest.mark.parametrize(
    ("analyzer", "params", "text", "passed"),
    [
        ("number", {"min": 1, "max": 2}, "1.5", True),
        ("number", {"max": 2}, "2.5", False),
        ("number", {}, "volts", False),
        ("regex", {"pattern": r"^HWQ,(\w+)"}, "HWQ,SIM", True),
        ("regex", {"pattern": "^x"}, "HWQ", False),
        ("equals", {"expected": True}, "true", True),
        ("equals", {"expected": "OK"}, " OK\n", True),
        ("equals", {"expected": 5}, "6", False),
        ("expect", {"one_of": ["READY", "IDLE"]}, "IDLE\n", True),
        ("expect", {"one_of": ["READY", 1]}, "BUSY", False),
        ("json", {"pointer": "/ch/1", "equals": 2.5}, '{"ch": [1, 2.5]}', True),
        ("json", {"pointer": "/ch/5"}, '{"ch": [1, 2.5]}', False),
        ("json", {"pointer": "/a~1b"}, '{"a/b": null}', True),
        ("json", {"pointer": "/a", "exists": False}, "{}", True),
        ("json", {"pointer": ""}, "not json", False),
    ],
)
def test_every_built_in_verdict_says_whether_it_passed(
    analyzer: str, params: dict[str, Any], text: str, passed: bool
) -> None:
    assert _verdict(analyzer, params, text)["passed"] is passed


def test_every_built_in_is_registered_by_entry_point_too() -> None:
    from importlib.metadata import entry_points

    registered = {point.name: point.load() for point in entry_points(group=ENTRY_POINT_GROUP)}
    assert {name: registered.get(name) for name in BUILT_IN_ANALYZERS} == BUILT_IN_ANALYZERS


def _distribution(site: Path, name: str, lines: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")


def test_plugins_are_found_and_bad_ones_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab_analyzers.py").write_text(
        "from tasks.analyzers import NUMBER\nGOOD = NUMBER\nNOT_AN_ANALYZER = 42\n"
    )
    _distribution(
        tmp_path,
        "lab_analyzers",
        "\n".join([
            "ratio = lab_analyzers:GOOD",
            "number = lab_analyzers:NOT_AN_ANALYZER",  # may not replace a built-in
            "Bad-Name = lab_analyzers:GOOD",
            "broken = lab_analyzers:NOT_AN_ANALYZER",
            "missing = no_such_module:GOOD",
        ]),
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    found = _discover()
    assert found["ratio"] == NUMBER
    assert found["number"] is BUILT_IN_ANALYZERS["number"]
    assert not {"Bad-Name", "broken", "missing"} & set(found)
    monkeypatch.delitem(sys.modules, "lab_analyzers")


def test_an_analyzer_that_raises_gives_an_error_verdict() -> None:
    assert _verdict("regex", {}, "x") == {"error": "KeyError: 'pattern'", "passed": False}

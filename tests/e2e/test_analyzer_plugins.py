"""Analyzers over HTTP: params checked at submission, plugins by entry point, failed verdicts.

The example plugin (`examples/analyzer_plugin`) is made importable the way an installed
package is: its folder on `sys.path` (PYTHONPATH of the API and the server worker) beside a
`.dist-info` folder whose `entry_points.txt` registers it in the `hwq.analyzers` group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.local_stack import Stack, running_stack

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "analyzer_plugin"
# An analyzer whose every run raises: the reply must come through untouched.
RAISING_ANALYZER = """
from pydantic import BaseModel
from tasks.analyzers import Analyzer


class NoParams(BaseModel):
    pass


def explode(response, params):
    raise RuntimeError("analyzer bug")


EXPLODES = Analyzer(explode, NoParams, "Always raises")
"""


def _distribution(site: Path, name: str, entry_points: str) -> None:
    """What `pip install` leaves for a package's metadata: enough for importlib.metadata."""
    info = site / f"{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[hwq.analyzers]\n{entry_points}\n")


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose API and server worker see the example plugin and a raising analyzer."""
    site = tmp_path_factory.mktemp("site")
    _distribution(site, "hwq_within_percent", "within_percent = hwq_within_percent:WITHIN_PERCENT")
    (site / "raising_analyzer.py").write_text(RAISING_ANALYZER)
    _distribution(site, "raising_analyzer", "explodes = raising_analyzer:EXPLODES")
    path = os.pathsep.join([str(site), str(PLUGIN), os.environ.get("PYTHONPATH", "")])
    home = tmp_path_factory.mktemp("hwq-analyzers")
    with running_stack(home, redis_url, PYTHONPATH=path.rstrip(os.pathsep)) as stack:
        yield stack


@pytest.fixture(scope="module")
def device(stack: Stack) -> str:
    name = f"a{uuid.uuid4().hex[:8]}"
    stack.add_sim_device(name)
    return name


def _submit(stack: Stack, device: str, payload: str, analysis: dict[str, Any]) -> Any:
    body = {"kind": "line", "payload": payload, "analysis": analysis}
    return stack.request("POST", f"/devices/{device}/commands", body=body)


def _analysed(stack: Stack, device: str, payload: str, analysis: dict[str, Any]) -> Any:
    reply = _submit(stack, device, payload, analysis)
    assert reply.status == 202, reply.body
    command = stack.wait(reply.body["id"])
    assert command["state"] == "done", command
    return command


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"analyzer": "number", "params": {"min": "abc"}}, "analysis.params.min"),
        ({"analyzer": "regex", "params": {"pattern": "(unclosed"}}, "analysis.params.pattern"),
        ({"analyzer": "equals", "params": {"expected": {"a": 1}}}, "analysis.params.expected"),
        ({"analyzer": "json", "params": {"pointer": "no-slash"}}, "analysis.params.pointer"),
        ({"analyzer": "json", "params": {"pointer": "/a", "exists": "yes"}},
         "analysis.params.exists"),
        ({"analyzer": "expect", "params": {"one_of": []}}, "analysis.params.one_of"),
        ({"analyzer": "expect", "params": {"one_of": "OK"}}, "analysis.params.one_of"),
        ({"analyzer": "manual", "params": {"x": 1}}, "analysis.params.x"),
        ({"analyzer": "within_percent", "params": {"target": 10, "percent": 0}},
         "analysis.params.percent"),
        ({"analyzer": "within_percent", "params": {"percent": 5}}, "analysis.params.target"),
    ],
)  # fmt: skip
def test_bad_params_are_a_422_naming_the_param(
    stack: Stack, device: str, analysis: dict[str, Any], field: str
) -> None:
    reply = _submit(stack, device, "ECHO 1", analysis)
    assert reply.status == 422, reply.body
    assert [error["field"] for error in reply.body["errors"]] == [field], reply.body


def test_the_built_in_json_and_expect_analyzers_give_a_verdict(stack: Stack, device: str) -> None:
    document = 'ECHO {"ch": [1.5, 2.5], "ok": true}'
    found = {"analyzer": "json", "params": {"pointer": "/ch/1", "equals": 2.5}}
    assert _analysed(stack, device, document, found)["analysis"]["value"] == {
        "found": True,
        "value": 2.5,
        "passed": True,
    }
    missing = {"analyzer": "json", "params": {"pointer": "/volts", "exists": True}}
    assert _analysed(stack, device, document, missing)["analysis"]["value"]["passed"] is False
    one_of = {"analyzer": "expect", "params": {"one_of": ["READY", "IDLE"]}}
    assert _analysed(stack, device, "ECHO IDLE", one_of)["analysis"]["value"] == {
        "value": "IDLE",
        "passed": True,
    }


def test_a_plugin_analyzer_is_usable_through_the_api(stack: Stack, device: str) -> None:
    analysis = {"analyzer": "within_percent", "params": {"target": 10, "percent": 5}}
    near = _analysed(stack, device, "ECHO 10.2", analysis)
    assert near["analysis"]["value"] == {"value": 10.2, "off_percent": 2.0, "passed": True}
    far = _analysed(stack, device, "ECHO 12", analysis)
    assert far["analysis"]["value"]["passed"] is False


def test_a_raising_analyzer_keeps_the_reply_and_records_its_error(
    stack: Stack, device: str
) -> None:
    command = _analysed(stack, device, "ECHO kept", {"analyzer": "explodes"})
    assert command["response"] == {"text": "kept"}
    assert command["analysis"]["value"] == {
        "error": "RuntimeError: analyzer bug",
        "passed": False,
    }


def _hwq_run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HWQ_URL": f"http://127.0.0.1:{stack.api_port}",
           "HWQ_TOKEN": stack.admin_token, "HWQ_HOME": str(stack.home)}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "hwq.cli", "run", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_hwq_run_exits_3_when_the_verdict_fails(stack: Stack, device: str) -> None:
    failed = _hwq_run(stack, device, "ECHO 5", "--analysis", "number", "--param", "max=1")
    assert failed.returncode == 3, failed.stderr
    assert failed.stdout == "5\n"
    assert "the number verdict did not pass" in failed.stderr
    passed = _hwq_run(stack, device, "ECHO 5", "--analysis", "number", "--param", "max=9")
    assert passed.returncode == 0, passed.stderr
    broken = _hwq_run(stack, device, "ECHO 5", "--analysis", "explodes")
    assert broken.returncode == 3, broken.stderr
    assert "RuntimeError: analyzer bug" in broken.stderr

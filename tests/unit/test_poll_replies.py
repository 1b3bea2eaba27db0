"""A polling device's reply must fit its command's kind."""

from __future__ import annotations

import pytest

from tasks.auth import Principal
from tasks.errors import Forbidden, ValidationFailed
from tasks.poll_replies import check_device_access, response_for_kind


@pytest.mark.parametrize(
    ("kind", "reply", "response"),
    [
        ("line", {"text": "OK"}, {"text": "OK"}),
        ("raw", {"data": "aGk="}, {"data": "aGk="}),
        ("frame", {"status": 0, "values": [1, -2]}, {"status": 0, "values": [1, -2]}),
        (
            "python",
            {"stdout": "2\n", "exit_code": 0},
            {"stdout": "2\n", "stderr": "", "exit_code": 0},
        ),  # fmt: skip
        (
            "python",
            {"stdout": "", "stderr": "boom", "exit_code": 1},
            {"stdout": "", "stderr": "boom", "exit_code": 1},
        ),  # fmt: skip
    ],
)
def test_a_fitting_reply_becomes_the_response(
    kind: str, reply: dict[str, object], response: dict[str, object]
) -> None:
    assert response_for_kind(kind, reply) == response


@pytest.mark.parametrize(
    ("kind", "reply", "fields"),
    [
        ("line", {"data": "aGk="}, {"data", "text"}),
        ("line", {}, {"text"}),
        ("frame", {"status": 0}, {"values"}),
        ("python", {"text": "2"}, {"text", "stdout", "exit_code"}),
        ("raw", {"data": "aGk=", "text": "hi"}, {"text"}),
    ],
)
def test_a_misfitting_reply_names_its_fields(
    kind: str, reply: dict[str, object], fields: set[str]
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        response_for_kind(kind, reply)
    assert {e["field"] for e in refused.value.errors} == fields


def test_only_the_devices_own_token_or_an_admin_may_answer() -> None:
    check_device_access(Principal("b", "device", device="b1"), "b1")
    check_device_access(Principal("root", "admin"), "b1")
    for principal in (
        Principal("b", "device", device="b2"),
        Principal("op", "operator"),
        Principal("v", "viewer"),
    ):
        with pytest.raises(Forbidden):
            check_device_access(principal, "b1")

"""`/api/v1/legacy`: the education ancestor's protocol for clients written for it (DESIGN §10).

Fields come as a form, a query string or a JSON object; the token as a bearer header or a
`token` field, since the ancestor's clients sent no headers. Who may do what (the ancestor had
no roles): a viewer may ask the status; an operator requests commands and provides analyses,
as the ancestor's server side did; retrieval and response are the device's own (its device
token) or an operator's. Every answer is the ancestor's status object; an operation not valid
in the current state answers 409 with that object and `error`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, Field

from api.auth import bearer_token, check_role
from api.context import hwq_service
from api.openapi import documented
from api.poll_parts import poll_parts
from api.polling import check_polling_device
from tasks.auth import Principal
from tasks.errors import CommandStateError, Unauthorized, ValidationFailed
from tasks.legacy_protocol import (
    ANALYSIS,
    COMMANDS,
    REQUEST,
    RETRIEVAL,
    STATUS_QUERY,
    LegacyProtocol,
    LegacyRefused,
)

bp = Blueprint("legacy", __name__)

# The least role each operation needs of a token that is not the device's own.
ROLE_FOR = {STATUS_QUERY: "viewer", REQUEST: "operator", ANALYSIS: "operator"}
# How the protocol's own refusals of a field begin: rules of the ancestor's protocol that no
# schema of its optional fields states (which fields each command needs, GET only to ask).
LEGACY_REFUSAL = "the legacy protocol needs"
# Operations a device's own token may do.
DEVICE_MAY = (STATUS_QUERY, RETRIEVAL, "hw_response_provide")


class LegacyFields(BaseModel):
    """The ancestor's fields, as a form, a query string or a JSON object."""

    user: str | None = Field(None, description="The device's name")
    command: str | None = Field(None, description=" | ".join(COMMANDS))
    hw_comm: str | None = Field(None, description="The Python program to run (request)")
    hw_resp: str | None = Field(None, description="What the program gave (response)")
    server_anal: str | None = Field(None, description="The server's analysis")
    token: str | None = Field(None, description="The bearer token, for clients sending no header")


class LegacyStatus(BaseModel):
    """The ancestor's answer to every operation."""

    user: str
    state: int = Field(ge=0, le=3)
    command: str
    hw_command: Any
    hw_response: Any
    server_analysis: Any
    time: str


_DOC = documented(
    "The education ancestor's protocol",
    query=LegacyFields,
    response=LegacyStatus,
    errors=(401, 403, 404, 409),
)


@bp.get("/legacy")
@_DOC
def legacy_status() -> Response:
    """The ancestor's status_query (fields in the query string); changes nothing."""
    return _legacy()


@bp.post("/legacy")
@_DOC
def legacy_operation() -> Response:
    """One operation of the ancestor's protocol (fields as a form, a query or JSON)."""
    return _legacy()


def _legacy() -> Response:
    fields = _fields()
    principal = _principal(fields)
    user = fields.get("user")
    command = fields.get("command") or ""
    if not user:
        raise _invalid("user", f"{LEGACY_REFUSAL} user (the device's name)")
    if command not in COMMANDS:
        raise _invalid("command", f"{LEGACY_REFUSAL} command, one of {', '.join(COMMANDS)}")
    _authorise(principal, str(user), command)
    if command != STATUS_QUERY and request.method != "POST":
        raise _invalid("command", f"{LEGACY_REFUSAL} POST for {command}: it changes the state")
    device = hwq_service().get_device(str(user))  # 404 for an unknown user
    parts = poll_parts()
    protocol = LegacyProtocol(hwq_service(), parts.replies, parts.events.collected)
    try:
        check_polling_device(device)
        protocol.perform(device["name"], command, fields, principal.name)
    except LegacyRefused as e:
        return _answer({**e.answer, "error": str(e)}, 409)
    except CommandStateError as e:
        return _answer({**protocol.status(device["name"], command), "error": str(e)}, 409)
    return _answer(protocol.status(device["name"], command), 200)


def _fields() -> dict[str, Any]:
    """The request's fields: query string, then form, then a JSON object, the later winning."""
    fields: dict[str, Any] = dict(request.args.items())
    fields.update(request.form.items())
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            fields.update(body)
    return fields


def _principal(fields: dict[str, Any]) -> Principal:
    header = request.headers.get("Authorization", "")
    token = bearer_token(header) if header else str(fields.get("token") or "")
    if not token:
        raise Unauthorized("Send the token as Authorization: Bearer <token> or a token field.")
    return hwq_service().authenticate(token)


def _authorise(principal: Principal, device: str, command: str) -> None:
    if principal.role == "device":
        if principal.device == device and command in DEVICE_MAY:
            return
        check_role(principal, "operator")  # raises Forbidden, naming the role needed
    check_role(principal, ROLE_FOR.get(command, "operator"))


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, [{"field": field, "message": message}])


def _answer(body: dict[str, Any], status: int) -> Response:
    return current_app.response_class(json.dumps(body), status=status, mimetype="application/json")

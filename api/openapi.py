"""The OpenAPI 3.1 document, built from the app's routes and the models that validate them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel
from werkzeug.routing import parse_converter_args

from api.auth import ROLE_ATTRIBUTE
from api.problems import PROBLEM_MIME
from api.responses import Problem
from tasks.queues import DEVICE_NAME_PATTERN

View = TypeVar("View", bound=Callable[..., Any])

OPENAPI_VERSION = "3.1.0"
# The attribute a documented view carries.
DOC_ATTRIBUTE = "hwq_doc"
_SCHEMA_REF = "#/components/schemas/{model}"
_RESPONSE_REF = "#/components/responses/{name}"
_PATH_ARG = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")
_JSON = "application/json"

# Error responses shared by the operations: status → (component name, description).
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("MalformedRequest", "The body is not a JSON object"),
    401: ("Unauthorized", "No bearer token, or an unknown one"),
    403: ("Forbidden", "The token's role is too low"),
    404: ("NotFound", "No such device, command or route"),
    409: ("Conflict", "Not allowed in the current state"),
    413: ("BodyTooLarge", "The body is larger than the API accepts"),
    422: ("InvalidField", "A field or query parameter is invalid; see `errors`"),
    429: ("QueueFull", "The device's queue is full"),
    503: ("ServiceUnavailable", "Redis, the broker or the database cannot be reached"),
}


@dataclass(frozen=True)
class OperationDoc:
    """What the OpenAPI document says about one view beyond what its route and role say."""

    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    # A media type whose body no model describes (the docs page, the document itself).
    media: str | None = None
    status: int = 200
    # Problem statuses beyond those the route, role, body and query already imply.
    errors: tuple[int, ...] = ()
    # Responses that are not problems, such as the health report's 503.
    other_responses: dict[int, type[BaseModel]] = field(default_factory=dict)
    # Request headers the operation reads, as OpenAPI parameter objects.
    headers: tuple[dict[str, Any], ...] = ()
    # Other successes that carry no body, each with what it means (a poll's 204).
    empty_responses: dict[int, str] = field(default_factory=dict)
    # What a client should know beyond the summary, put before the role in the description.
    notes: str | None = None

    def __call__(self, view: View) -> View:
        """Attach this description to a view: OperationDoc is used as a decorator."""
        setattr(view, DOC_ATTRIBUTE, self)
        return view


# Reads better above a view: @documented("List devices", response=DeviceList).
documented = OperationDoc


def build_openapi(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every route of `app`."""
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        path, path_parameters = _path_parameters(rule.rule)
        view = app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, view, path_parameters, components
            )
    problem = components.ref(Problem)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "hwq",
            "version": _api_version(),
            "description": "Run commands on remote hardware: queued per device, one at a time.",
        },
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "responses": {
                name: {"description": description, "content": {PROBLEM_MIME: {"schema": problem}}}
                for name, description in _ERRORS.values()
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


class _Components:
    """The schemas the document refers to, gathered from the models as operations use them."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        schema = self.schema(model)
        self._add(model.__name__, schema)
        return {"$ref": _SCHEMA_REF.format(model=model.__name__)}

    def schema(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_SCHEMA_REF)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        return schema

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        # Two different models of one name would make every reference to it ambiguous.
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are both named {name!r}")


def _operation(
    endpoint: str,
    view: Callable[..., Any],
    path_parameters: list[dict[str, Any]],
    components: _Components,
) -> dict[str, Any]:
    blueprint, _, name = endpoint.rpartition(".")
    doc: OperationDoc = getattr(view, DOC_ATTRIBUTE, None) or OperationDoc(name.replace("_", " "))
    role: str | None = getattr(view, ROLE_ATTRIBUTE, None)
    operation: dict[str, Any] = {"operationId": name, "summary": doc.summary, "tags": [blueprint]}
    # Every route refuses query parameters it does not take (api.inputs.refuse_unknown_query).
    errors = {422, 503, *doc.errors}
    if role:
        operation["description"] = f"Needs a bearer token with the {role} role or higher."
        if doc.notes:
            operation["description"] = f"{doc.notes} {operation['description']}"
        operation["security"] = [{"bearer": []}]
        operation["x-hwq-role"] = role
        errors |= {401, 403}
    else:
        operation["security"] = []
    parameters = list(path_parameters)
    if path_parameters:
        errors.add(404)
    if doc.query:
        parameters += _query_parameters(components.schema(doc.query))
    if doc.headers:
        parameters += doc.headers
    if parameters:
        operation["parameters"] = parameters
    if doc.body:
        operation["requestBody"] = {
            "required": True,
            "content": {_JSON: {"schema": components.ref(doc.body)}},
        }
        errors |= {400, 413}
    responses: dict[str, Any] = {str(doc.status): _success(doc, components)}
    for status in sorted(errors):
        responses[str(status)] = {"$ref": _RESPONSE_REF.format(name=_ERRORS[status][0])}
    for status, model in doc.other_responses.items():
        responses[str(status)] = {
            "description": model.__doc__ or model.__name__,
            "content": {_JSON: {"schema": components.ref(model)}},
        }
    for status, meaning in doc.empty_responses.items():
        responses[str(status)] = {"description": meaning}
    operation["responses"] = responses
    return operation


def _success(doc: OperationDoc, components: _Components) -> dict[str, Any]:
    if doc.response:
        return {
            "description": doc.response.__doc__ or doc.summary,
            "content": {_JSON: {"schema": components.ref(doc.response)}},
        }
    if doc.media:
        return {"description": doc.summary, "content": {doc.media: {"schema": {}}}}
    return {"description": "No content" if doc.status == 204 else doc.summary}


def _path_parameters(rule: str) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for match in _PATH_ARG.finditer(rule):
        schema: dict[str, Any] = {"type": "string"}
        if match["converter"] == "device":
            schema["pattern"] = DEVICE_NAME_PATTERN.pattern
        elif match["converter"] == "int":
            schema = {"type": "integer", "minimum": 0}
        elif (match["converter"] or "").startswith("any("):
            # <any('a', 'b'):name> matches those values only.
            schema["enum"] = list(parse_converter_args(match["converter"][4:-1])[0])
        parameters.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _PATH_ARG.sub(r"{\g<name>}", rule), parameters


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    parameters = []
    for name, property_schema in schema.get("properties", {}).items():
        parameter = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": property_schema,
        }
        if "description" in property_schema:
            parameter["description"] = property_schema["description"]
        parameters.append(parameter)
    return parameters


def _api_version() -> str:
    try:
        return version("hwq")
    except PackageNotFoundError:
        # Running from a checkout that was never installed.
        return "0+unknown"

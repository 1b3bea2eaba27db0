"""api.problems, api.auth and api.inputs: every failure leaves as one problem+json response.

The service here is a small stand-in that raises what each test asks for: the unit under test
is the mapping from hwq's errors (and the drivers') to HTTP, not the service.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
import redis.exceptions
import sqlalchemy.exc
from flask import Flask
from flask.testing import FlaskClient
from kombu.exceptions import OperationalError as BrokerError

from api import create_app
from config import Settings
from tasks.auth import Principal
from tasks.errors import (
    CommandStateError,
    Conflict,
    DeviceError,
    Forbidden,
    HwqError,
    MalformedRequest,
    NotFound,
    QueueFull,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)

PROBLEM = "application/problem+json"
TOKENS = {
    "admin-token": Principal("ada", "admin"),
    "operator-token": Principal("otto", "operator"),
    "viewer-token": Principal("vera", "viewer"),
    "device-token": Principal("sim0", "device"),
}
DEVICE = {"name": "sim0", "transport": "serial", "codec": "line"}


class RaisingService:
    """Knows four tokens; every other call raises `error` if one is set, else answers simply."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.report = {"status": "ok", "redis": "ok", "database": "ok", "version": "test"}

    def _answer(self, value: Any) -> Any:
        if self.error is not None:
            raise self.error
        return value

    def health(self) -> dict[str, str]:
        return self._answer(self.report)

    def authenticate(self, token: str) -> Principal:
        if token not in TOKENS:
            raise Unauthorized("the bearer token is not valid")
        return TOKENS[token]

    def list_devices(self) -> list[dict[str, Any]]:
        return self._answer([DEVICE])

    def get_device(self, name: str) -> dict[str, Any]:
        return self._answer(DEVICE)

    def register_device(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._answer(spec)

    def submit(
        self, device: str, user: str, request: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        return self._answer({"id": "c1", "device": device, "user": user, **request})

    def get_command(self, command_id: str) -> dict[str, Any]:
        return self._answer({"id": command_id})

    def list_commands(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return self._answer(([], None))


@pytest.fixture
def service() -> RaisingService:
    return RaisingService()


@pytest.fixture
def app(service: RaisingService) -> Flask:
    config = {"TESTING": True, "HWQ_SETTINGS": Settings(), "MAX_CONTENT_LENGTH": 1000}
    return create_app(config, service=service)  # type: ignore[arg-type]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def auth(role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {role}-token"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    return body


# --- hwq's own errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (MalformedRequest("bad body"), 400, "malformed-request"),
        (Forbidden("not yours"), 403, "forbidden"),
        (NotFound("no device named 'sim0'"), 404, "not-found"),
        (CommandStateError("device 'sim0' is busy"), 409, "command-state-error"),
        (Conflict("a device named 'sim0' exists already"), 409, "conflict"),
        (QueueFull("device 'sim0' already holds 1000 queued commands"), 429, "queue-full"),
        (ServiceUnavailable("the broker did not take the command"), 503, "service-unavailable"),
        (DeviceError("port /dev/ttyUSB0 vanished"), 500, "device-error"),
    ],
)
def test_each_hwq_error_has_its_status(
    client: FlaskClient, service: RaisingService, error: HwqError, status: int, slug: str
) -> None:
    service.error = error
    body = assert_problem(client.get("/api/v1/devices/sim0", headers=auth()), status)
    assert body == {
        "type": f"https://hwq.dev/problems/{slug}",
        "title": type(error).title,
        "status": status,
        "detail": str(error),
    }


def test_a_validation_failure_from_the_service_keeps_its_field_errors(
    client: FlaskClient, service: RaisingService
) -> None:
    errors: list[dict[str, object]] = [{"field": "kind", "message": "python is not enabled"}]
    service.error = ValidationFailed("device 'sim0' does not allow python commands", errors)
    body = assert_problem(
        client.post(
            "/api/v1/devices/sim0/commands",
            headers=auth("operator"),
            json={"kind": "python", "payload": "print(1)"},
        ),
        422,
    )
    assert body["errors"] == errors


# --- authentication and roles --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic YTpi"}, {"Authorization": "x"}],
)
def test_without_a_bearer_token_the_answer_is_401(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.get("/api/v1/devices", headers=headers)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_token_is_401(client: FlaskClient) -> None:
    response = client.get("/api/v1/devices", headers={"Authorization": "Bearer nonsense"})
    assert assert_problem(response, 401)["detail"] == "the bearer token is not valid"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("get", "/api/v1/devices", "device"),
        ("get", "/api/v1/commands/c1", "device"),
        ("post", "/api/v1/devices", "operator"),
        ("delete", "/api/v1/devices/sim0", "operator"),
        ("patch", "/api/v1/devices/sim0", "viewer"),
        ("post", "/api/v1/devices/sim0/commands", "viewer"),
        ("post", "/api/v1/commands/c1/cancel", "viewer"),
    ],
)
def test_a_role_too_low_is_403(client: FlaskClient, method: str, path: str, role: str) -> None:
    # The role is checked before the body is read, so no body is needed to get the 403.
    assert_problem(client.open(path, method=method.upper(), headers=auth(role)), 403)


def test_health_docs_and_document_need_no_token(client: FlaskClient) -> None:
    for path in ("/api/v1/health", "/api/v1/openapi.json", "/api/v1/docs"):
        assert client.get(path).status_code == 200


# --- drivers: Redis, the database, the broker ----------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        sqlalchemy.exc.OperationalError(
            "SELECT * FROM tokens WHERE hash = ?", ("s3cret-hash",), Exception("disk I/O error")
        ),
        sqlalchemy.exc.InterfaceError("SELECT 1", None, Exception("connection closed")),
        BrokerError("[Errno 111] Connection refused"),
    ],
)
def test_an_unreachable_dependency_is_503_without_its_message(
    client: FlaskClient, service: RaisingService, error: Exception
) -> None:
    service.error = error
    body = assert_problem(client.get("/api/v1/devices", headers=auth()), 503)
    assert "cannot be reached" in body["detail"]
    for secret in ("SELECT", "s3cret", "6379", "Errno"):
        assert secret not in body["detail"]


def test_health_answers_503_with_its_report_when_degraded(
    client: FlaskClient, service: RaisingService
) -> None:
    service.report = {"status": "degraded", "redis": "down", "database": "ok", "version": "t"}
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json() == service.report


def test_an_unexpected_exception_is_a_500_problem(service: RaisingService) -> None:
    config = {"HWQ_SETTINGS": Settings()}  # not TESTING, so Flask answers instead of raising
    client = create_app(config, service=service).test_client()  # type: ignore[arg-type]
    service.error = RuntimeError("bug")
    body = assert_problem(client.get("/api/v1/devices", headers=auth()), 500)
    assert "bug" not in body["detail"]


# --- routing and bodies --------------------------------------------------------------------------


def test_an_unknown_route_is_a_404_problem(client: FlaskClient) -> None:
    not_found = "https://hwq.dev/problems/not-found"
    assert assert_problem(client.get("/api/v1/nothing-here"), 404)["type"] == not_found
    # The root is the browser console's page; beside it, nothing else is routed.
    assert assert_problem(client.get("/nothing-here"), 404)["type"] == not_found
    # A name that cannot be a device's is not routed at all.
    assert_problem(client.get("/api/v1/devices/Not.A.Device", headers=auth()), 404)


def test_a_wrong_method_is_a_405_problem_with_allow(client: FlaskClient) -> None:
    response = client.put("/api/v1/devices/sim0", headers=auth())
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}


def test_a_body_over_the_limit_is_a_413_problem(client: FlaskClient) -> None:
    response = client.post("/api/v1/devices", headers=auth(), data=b"{" + b" " * 2000 + b"}")
    assert "1000 bytes" in assert_problem(response, 413)["detail"]


def test_a_chunked_body_over_the_limit_is_a_413_problem(client: FlaskClient) -> None:
    # A chunked body declares no length; the limit must hold while it is read.
    response = client.post(
        "/api/v1/devices",
        headers={**auth(), "Transfer-Encoding": "chunked"},
        input_stream=io.BytesIO(b'{"name": "' + b"x" * 2000 + b'"}'),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(response, 413)


def test_a_chunked_body_within_the_limit_is_read_whole(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/devices",
        headers={**auth(), "Transfer-Encoding": "chunked"},
        input_stream=io.BytesIO(b'{"name": "sim1"}'),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/devices/sim1"


@pytest.mark.parametrize(
    "data", [b"", b"   ", b"{", b"[1, 2]", b'"sim0"', b"null", b'{"name": NaN}', b"\xff\xfe{"]
)
def test_a_body_that_is_not_a_json_object_is_400(client: FlaskClient, data: bytes) -> None:
    response = client.post(
        "/api/v1/devices", headers=auth(), data=data, content_type="application/json"
    )
    assert_problem(response, 400)


def test_deeply_nested_json_is_refused_before_it_is_decoded(client: FlaskClient) -> None:
    body = assert_problem(client.post("/api/v1/devices", headers=auth(), data=b"[" * 999), 422)
    assert body["errors"][0]["field"] == "body"
    assert_problem(client.post("/api/v1/devices", headers=auth(), data=b"[" * 150), 400)


def test_wrong_types_and_unknown_fields_are_422_with_each_field(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/devices", headers=auth(), json={"name": "sim0", "baudrate": "9600", "colour": 1}
    )
    body = assert_problem(response, 422)
    assert {error["field"] for error in body["errors"]} == {"baudrate", "colour"}
    assert all(set(error) == {"field", "message"} for error in body["errors"])


def test_command_errors_name_fields_not_union_tags(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/devices/sim0/commands",
        headers=auth("operator"),
        json={"kind": "frame", "payload": {"command_id": 300}},
    )
    body = assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["payload.command_id"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/commands/c1?wait=61",
        "/api/v1/commands/c1?wait=-1",
        "/api/v1/commands/c1?wait=later",
        "/api/v1/commands?limit=0",
        "/api/v1/commands?limit=501",
        "/api/v1/commands?state=finished",
        "/api/v1/commands?colour=red",
    ],
)
def test_bad_query_values_are_422(client: FlaskClient, path: str) -> None:
    assert assert_problem(client.get(path, headers=auth("viewer")), 422)["errors"]


# --- the request log -----------------------------------------------------------------------------


def test_each_request_logs_one_line_without_the_token(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hwq.api")
    client.get("/api/v1/devices/sim0", headers=auth("viewer"))
    client.get("/api/v1/devices", headers={"Authorization": "Bearer wrong-token"})
    records = [r for r in caplog.records if r.name == "hwq.api"]
    assert [(r.method, r.path, r.status, r.principal) for r in records] == [  # type: ignore[attr-defined]
        ("GET", "/api/v1/devices/sim0", 200, "vera"),
        ("GET", "/api/v1/devices", 401, None),
    ]
    assert records[0].device == "sim0"  # type: ignore[attr-defined]
    assert all(r.duration_ms >= 0 for r in records)  # type: ignore[attr-defined]
    for record in records:
        assert "token" not in repr(vars(record))

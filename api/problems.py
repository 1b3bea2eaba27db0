"""Every error leaves the API here, as one application/problem+json response (RFC 9457)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from flask import Flask, Response, current_app
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from tasks.errors import HwqError, ServiceUnavailable, ValidationFailed

PROBLEM_MIME = "application/problem+json"
# Problem types are named under this base: hwq's own errors after their exception class, the
# HTTP layer's (unknown route, wrong method) after their status phrase, as not-found.
PROBLEM_TYPE_BASE = "https://hwq.dev/problems/"

log = logging.getLogger("hwq.api")


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str,
    errors: list[dict[str, object]] | None = None,
) -> Response:
    """A problem+json response."""
    body: dict[str, object] = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    response = Response(current_app.json.dumps(body), status=status, mimetype=PROBLEM_MIME)
    if status == 401:
        # RFC 6750: a 401 says which scheme would have worked.
        response.headers["WWW-Authenticate"] = 'Bearer realm="hwq"'
    return response


def problem_type(error_class: type[HwqError]) -> str:
    """The `type` URI of one of hwq's errors: QueueFull → …/queue-full."""
    slug = re.sub(r"(?<!^)(?=[A-Z])", "-", error_class.__name__).lower()
    return PROBLEM_TYPE_BASE + slug


def http_problem_type(exc: HTTPException) -> str:
    """The `type` URI of an error of the HTTP layer: 405 → …/method-not-allowed."""
    slug = re.sub(r"[^a-z0-9]+", "-", (exc.name or "error").lower()).strip("-")
    return PROBLEM_TYPE_BASE + slug


def _hwq_error(exc: HwqError) -> Response:
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    if exc.status == 500:
        # Not one of the statuses the contract names: something went wrong that a person
        # should look at. (503s are logged where the unreachable dependency is known.)
        log.error("%s: %s", type(exc).__name__, exc, exc_info=exc)
    response = problem_response(
        exc.status, exc.title, str(exc) or exc.title, type_=problem_type(type(exc)), errors=errors
    )
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = problem_response(
        status, exc.name, exc.description or exc.name, type_=http_problem_type(exc)
    )
    # Keep what werkzeug adds for the client, such as Allow on a 405.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


# Exceptions that mean a dependency cannot be reached, and what to call it in the answer.
_UNREACHABLE: list[tuple[type[Exception], str]] = [
    (RedisConnectionError, "Redis"),
    (RedisTimeoutError, "Redis"),
    (OperationalError, "The database"),
    (InterfaceError, "The database"),
    (BrokerError, "The broker"),
]


def _unreachable(what: str) -> Callable[[Exception], Response]:
    def handle(exc: Exception) -> Response:
        # SQLAlchemy's message holds the statement and its parameters; the driver's own error
        # (`orig`) says what went wrong without them. Neither goes to the client.
        cause = getattr(exc, "orig", None) or exc
        log.error("%s unreachable: %s: %s", what, type(cause).__name__, cause)
        return _hwq_error(ServiceUnavailable(f"{what} cannot be reached; try again shortly."))

    return handle


def problem_for(exc: Exception) -> Response | None:
    """The problem response the app's handlers give `exc`, or None for an unexpected error.

    For answers given outside a view (the asynchronous front door); needs an app context.
    """
    if isinstance(exc, HwqError):
        return _hwq_error(exc)
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    for error_class, what in _UNREACHABLE:
        if isinstance(exc, error_class):
            return _unreachable(what)(exc)
    return None


def register_problem_handlers(app: Flask) -> None:
    """Route every error class to its problem response."""
    app.register_error_handler(HwqError, _hwq_error)
    app.register_error_handler(HTTPException, _http_error)
    for error_class, what in _UNREACHABLE:
        app.register_error_handler(error_class, _unreachable(what))

"""What the client raises: one root, and a class per problem status of the API (DESIGN §3)."""

from __future__ import annotations

from typing import Any


class HwqClientError(Exception):
    """The API answered with a problem, something other than its JSON, or not at all."""

    # The HTTP status this class stands for; 0 for errors that are not an answer's status.
    status_code = 0

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        title: str = "",
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status or self.status_code
        self.title = title
        self.detail = detail
        # Field problems of a 422: [{field, message}].
        self.errors = errors or []
        # The decoded answer body, for callers that read more than the problem fields.
        self.body = body


class BadRequest(HwqClientError):
    """400: the body is not a JSON object."""

    status_code = 400


class Unauthorized(HwqClientError):
    """401: no token, or one the API does not know (revoked, mistyped)."""

    status_code = 401


class Forbidden(HwqClientError):
    """403: the token's role is too low for this."""

    status_code = 403


class NotFound(HwqClientError):
    """404: no such device, command, host or route."""

    status_code = 404


class Conflict(HwqClientError):
    """409: not allowed in the resource's current state."""

    status_code = 409


class PayloadTooLarge(HwqClientError):
    """413: the body is larger than the API accepts."""

    status_code = 413


class ValidationFailed(HwqClientError):
    """422: a field or query parameter is invalid; `.errors` names each."""

    status_code = 422


class QueueFull(HwqClientError):
    """429: the device's queue is full, or this token holds too many waits."""

    status_code = 429


class Unavailable(HwqClientError):
    """503: the API cannot reach Redis, the broker or the database; nothing was half-made."""

    status_code = 503


class ServerError(HwqClientError):
    """Another 5xx answer, or an answer that is not the hwq API's JSON."""

    status_code = 500


class ConnectionFailed(HwqClientError):
    """The API could not be reached, or did not answer in time."""


class RequestTimedOut(ConnectionFailed):
    """The API took longer than the client's timeout (plus any wait it was asked to hold)."""


_BY_STATUS: dict[int, type[HwqClientError]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        ValidationFailed,
        QueueFull,
        Unavailable,
    )
}


def error_class(status: int) -> type[HwqClientError]:
    """The exception class of an error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else HwqClientError


def problem_error(status: int, body: object, raw: bytes) -> HwqClientError:
    """An error answer as its exception, from its problem+json body when it has one."""
    cls = error_class(status)
    if not isinstance(body, dict):
        text = raw.decode(errors="replace").strip()[:200]
        return cls(f"{status} {text or 'error'}", status=status, detail=text, body=body)
    title = str(body.get("title") or "Error")
    detail = str(body.get("detail") or "")
    errors = body["errors"] if isinstance(body.get("errors"), list) else []
    message = f"{status} {title}: {detail}" if detail else f"{status} {title}"
    if errors:
        message += " (" + "; ".join(_field_problem(e) for e in errors) + ")"
    return cls(message, status=status, title=title, detail=detail, errors=errors, body=body)


def _field_problem(error: object) -> str:
    if isinstance(error, dict) and "field" in error:
        return f"{error['field']}: {error.get('message', 'invalid')}"
    return str(error)

"""The one exception hierarchy of hwq; the API maps each class to one HTTP status."""

from __future__ import annotations

# The root and the settings error live in config, the one package below this one.
from config.errors import ConfigError as ConfigError
from config.errors import HwqError as HwqError


class ValidationFailed(HwqError):
    """A request field is invalid."""

    status = 422
    title = "Invalid field"

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class MalformedRequest(HwqError):
    """The request body is not the JSON document the route expects."""

    status = 400
    title = "Malformed request"


class Unauthorized(HwqError):
    """No bearer token, or one hwq does not know."""

    status = 401
    title = "Unauthorized"


class Forbidden(HwqError):
    """The token's role is too low for this action."""

    status = 403
    title = "Forbidden"


class NotFound(HwqError):
    """The named device, command or route does not exist."""

    status = 404
    title = "Not found"


class CommandStateError(HwqError):
    """The action is not allowed in the command's or device's current state."""

    status = 409
    title = "Conflict"


class Conflict(CommandStateError):
    """A resource with that name exists already, or is busy."""


class TokensChanged(HwqError):
    """A token was revoked since the submitting one was checked: it must be checked again.

    Never an answer: the front door checks the token anew and submits again.
    """

    status = 401
    title = "Unauthorized"


class QueueFull(HwqError):
    """The device already holds as many queued commands as it may."""

    status = 429
    title = "Device queue full"


class TooManyWaits(HwqError):
    """The token already holds as many long-polls open as one token may."""

    status = 429
    title = "Too many waits"


class ServiceUnavailable(HwqError):
    """Redis, the broker or the database cannot be reached."""

    status = 503
    title = "Service unavailable"


class OutcomeUnknown(ServiceUnavailable):
    """A request reached Redis, or may have, but its reply never came back."""


class RetryLater(ServiceUnavailable):
    """A dependency is there but cannot take the request now; the answer says when to retry."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class StoreNearlyFull(RetryLater):
    """Redis is near its memory limit, or the recorder far behind: come back later."""


class WriterBusy(RetryLater):
    """Another writer held the SQLite database past the writer lock's timeout."""


class IdempotencyKeyReused(HwqError):
    """An Idempotency-Key already named a different submission."""

    status = 422
    title = "Idempotency key reused"


class DeviceError(HwqError):
    """The device or its transport failed: port missing, write error, bad reply."""

    title = "Device error"


class ReplyTimeout(DeviceError):
    """The device did not complete its reply within the command's timeout."""

    title = "Reply timed out"


class PortNotClean(DeviceError):
    """The port may still hold another command's bytes, so the command was not written."""

    title = "Device port not clean"

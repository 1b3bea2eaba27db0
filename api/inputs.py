"""Reading request input: device names in paths, JSON bodies and query strings."""

from __future__ import annotations

import json
from typing import IO, Any, NoReturn, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from tasks.errors import MalformedRequest, ValidationFailed
from tasks.queues import DEVICE_NAME_PATTERN

Model = TypeVar("Model", bound=BaseModel)

# An oversized body is read and thrown away up to this many bytes before the 413 goes out, so
# the client sees the answer instead of a connection reset by the unread bytes; beyond it the
# connection is simply closed.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
_DRAIN_CHUNK_BYTES = 64 * 1024


class DeviceNameConverter(BaseConverter):
    """`<device:name>`: a path segment that can be a device name; anything else is a 404."""

    regex = DEVICE_NAME_PATTERN.pattern.removeprefix("^").removesuffix("$")


def refuse_oversized_body() -> None:
    """Answer 413 to a declared body above MAX_CONTENT_LENGTH before any view runs."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        _discard(request.environ["wsgi.input"], min(length, DRAIN_LIMIT_BYTES))
        raise too_large(limit)


def _read_body() -> bytes:
    """The body, read no further than the limit allows.

    A chunked body declares no length to refuse early, and werkzeug hands its stream over
    unlimited, so the limit is enforced here as it is read.
    """
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is None:
        return request.get_data()
    stream = request.stream
    body = bytearray()
    while len(body) <= limit:
        chunk = stream.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    _discard(stream, DRAIN_LIMIT_BYTES)
    raise too_large(limit)


def _discard(stream: IO[bytes], budget: int) -> None:
    # Never read past `budget`: on a bare socket that would wait for bytes that never come.
    while budget > 0:
        chunk = stream.read(min(budget, _DRAIN_CHUNK_BYTES))
        if not chunk:
            return
        budget -= len(chunk)


def too_large(limit: int) -> RequestEntityTooLarge:
    """The 413 for a body over `limit` bytes."""
    return RequestEntityTooLarge(f"The body may be at most {limit} bytes.")


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity, which are not JSON and no field can hold.
    raise ValueError(f"{name} is not valid JSON")


def json_body(model: type[Model]) -> Model:
    """The request body, which must be a JSON object, validated by `model`."""
    raw = _read_body()
    if not raw.strip():
        raise MalformedRequest("The request needs a JSON object as its body.")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise MalformedRequest(f"The body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("The body must be a JSON object.")
    return _validated(model, data)


def query_args(model: type[Model]) -> Model:
    """The query string validated by `model`; an empty value counts as absent."""
    data = {key: value for key, value in request.args.items() if value != ""}
    return _validated(model, data)


def _validated(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = field_errors(e, tagged_by=getattr(model, "tagged_by", None))
        raise ValidationFailed(_summary(errors), errors=errors) from None


def field_errors(exc: ValidationError, tagged_by: str | None = None) -> list[dict[str, object]]:
    """Pydantic's errors as `{field, message}`, with fields as dotted paths."""
    errors: list[dict[str, object]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        if tagged_by is not None:
            # A tagged union puts the tag (the command kind) in front of every location, and
            # reports a missing or unknown tag at the root; clients know fields, not tags.
            loc = (tagged_by,) if error["type"].startswith("union_tag_") else loc[1:]
        field = ".".join(str(part) for part in loc) or "(body)"
        message = "Field required" if error["type"] == "union_tag_not_found" else error["msg"]
        errors.append({"field": field, "message": _message(message)})
    return errors


def _message(msg: str) -> str:
    # Our own validators raise ValueError, which pydantic prefixes with "Value error, ".
    return msg.removeprefix("Value error, ")


def _summary(errors: list[dict[str, object]]) -> str:
    fields = sorted({str(error["field"]) for error in errors})
    noun = "field is" if len(fields) == 1 else "fields are"
    return f"{len(fields)} {noun} invalid: {', '.join(fields)}."

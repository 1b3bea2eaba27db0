"""Reading request input: device names in paths, JSON bodies and query strings."""

from __future__ import annotations

import json
import re
from typing import IO, Any, NoReturn, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from api.openapi import DOC_ATTRIBUTE
from tasks.errors import MalformedRequest, ValidationFailed
from tasks.json_bounds import MAX_BODY_DEPTH, text_exceeds_depth
from tasks.queues import DEVICE_NAME_PATTERN

Model = TypeVar("Model", bound=BaseModel)

# Idempotency-Key: at most this many characters, each visible ASCII or a space.
MAX_IDEMPOTENCY_KEY_CHARS = 255
_IDEMPOTENCY_KEY_CHARS = re.compile(r"[\x20-\x7e]+")
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# How the OpenAPI document describes it.
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": IDEMPOTENCY_KEY_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retried submission safe: the same key from the same user with the same body "
        "answers 202 with the command the first request made (same Location), even across "
        "API restarts; the same key with a different body is refused with 422."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_CHARS,
        "pattern": "^[\\x20-\\x7e]+$",
    },
}

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
    return validated_body(model, _read_body())


def validated_body(model: type[Model], raw: bytes) -> Model:
    """A whole body's bytes, which must be a JSON object, validated by `model`."""
    if not raw.strip():
        raise MalformedRequest("The request needs a JSON object as its body.")
    if text_exceeds_depth(raw):
        # Far beyond any field's bound; refused before the decoder recurses that deep.
        message = f"nests deeper than {MAX_BODY_DEPTH} levels of objects and arrays"
        raise ValidationFailed(
            f"The body {message}.", errors=[{"field": "body", "message": message}]
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise MalformedRequest(f"The body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("The body must be a JSON object.")
    return _validated(model, data)


def query_args(model: type[Model]) -> Model:
    """The query string validated by `model`; an empty value is a value like any other."""
    return _validated(model, dict(request.args.items()))


def refuse_unknown_query() -> None:
    """Answer 422 to query parameters the route does not take, before any view runs."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or not request.args:
        return
    doc = getattr(view, DOC_ATTRIBUTE, None)
    known = set(doc.query.model_fields) if doc is not None and doc.query else set()
    unknown = sorted(set(request.args) - known)
    if unknown:
        message = "unknown query parameter" if known else "this route takes no query parameters"
        errors: list[dict[str, object]] = [{"field": name, "message": message} for name in unknown]
        raise ValidationFailed(_summary(errors), errors=errors)


def _validated(model: type[Model], data: dict[str, Any]) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = field_errors(e, data)
        raise ValidationFailed(_summary(errors), errors=errors) from None


def field_errors(exc: ValidationError, data: Any = None) -> list[dict[str, object]]:
    """Pydantic's errors as `{field, message}`, with fields as dotted paths through `data`."""
    errors: list[dict[str, object]] = []
    for error in exc.errors(include_url=False, include_input=False):
        parts = _field_path(error["loc"], data)
        message = error["msg"]
        if error["type"].startswith("union_tag_"):
            # A missing or unknown tag (the command's kind, the analyzer) is reported where
            # the union is; clients know it as the field that holds the tag.
            parts.append(str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
            if error["type"] == "union_tag_not_found":
                message = "Field required"
        field = ".".join(part for part in parts if part) or "(body)"
        errors.append({"field": field, "message": _message(message)})
    return errors


def _field_path(loc: tuple[int | str, ...], data: Any) -> list[str]:
    """`loc` without the tags a tagged union puts in it: clients know fields, not tags."""
    parts: list[str] = []
    node = data
    for part in loc:
        is_tag = isinstance(node, dict) and part not in node and part in node.values()
        if isinstance(part, str) and is_tag:
            continue  # the value of the union's discriminator field, not a field
        parts.append(str(part))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return parts


def _message(msg: str) -> str:
    # Our own validators raise ValueError, which pydantic prefixes with "Value error, ".
    return msg.removeprefix("Value error, ")


def _summary(errors: list[dict[str, object]]) -> str:
    fields = sorted({str(error["field"]) for error in errors})
    noun = "field is" if len(fields) == 1 else "fields are"
    return f"{len(fields)} {noun} invalid: {', '.join(fields)}."


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header, checked, or None when it has none."""
    return checked_idempotency_key(request.headers.get(IDEMPOTENCY_KEY_HEADER))


def checked_idempotency_key(key: str | None) -> str | None:
    """An Idempotency-Key header's value, checked; None stays None."""
    if key is None:
        return None
    problem = None
    if not key.strip():
        problem = "must not be empty"
    elif len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        problem = f"must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters"
    elif not _IDEMPOTENCY_KEY_CHARS.fullmatch(key):
        problem = "must be visible ASCII characters and spaces"
    if problem:
        raise ValidationFailed(
            f"the {IDEMPOTENCY_KEY_HEADER} header {problem}",
            [{"field": IDEMPOTENCY_KEY_HEADER, "message": problem}],
        )
    return key

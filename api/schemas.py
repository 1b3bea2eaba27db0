"""Request models: the single source of validation for bodies and query strings, and of the docs.

Bodies are validated strictly (no "5" for 5, no true for 1, no unknown fields); query strings
arrive as text, so their models are lax about types but still forbid unknown parameters.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    ValidationError,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tasks.analyzer_registry import AnalysisRequest
from tasks.db.ledger import CURSOR_SHAPE
from tasks.device_options import OptionError, check_options
from tasks.json_bounds import MAX_JSON_BYTES, MAX_JSON_DEPTH, json_bound_problem
from tasks.lifecycle import State
from tasks.queues import DEVICE_NAME_PATTERN, HOST_NAME_PATTERN

# Longest line command, in characters; a line is one instrument command, not a file transfer.
MAX_LINE_CHARS = 4096
# The standard frame (DESIGN §5) carries at most this many int32 arguments.
MAX_FRAME_ARGS = 64
# Bounds of `timeout_s` (DESIGN §3): long enough for a slow measurement, short enough to bound
# how long a device is held.
MIN_TIMEOUT_S = 0.01
MAX_TIMEOUT_S = 300.0
# Largest reply a raw read may ask for, and the longest silence that may end one.
MAX_READ_BYTES = 1_048_576
MAX_IDLE_MS = 60_000
# Page size of command history.
DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 500
# Longest long-poll a client may ask for with `?wait`.
MAX_WAIT_S = 60.0

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# The document's spelling of what `_base64_text` and `_single_line` accept.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
SINGLE_LINE_PATTERN = r"^[^\r\n]*$"


def _base64_text(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("must be standard base64 (A-Z a-z 0-9 + /, padded with =)") from None
    return value


def _single_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line without its terminator (no \\n or \\r)")
    return value


def _whole_number(value: object) -> object:
    # JSON has one kind of number: 9600.0 is 9600, as JSON Schema's "integer" agrees.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    # Raised as a ValidationError of its own so the problem names `options.parity`, not `options`.
    try:
        return check_options(options)
    except OptionError as e:
        detail = PydanticCustomError("value_error", "{message}", {"message": str(e)})
        raise ValidationError.from_exception_data(
            "options",
            [InitErrorDetails(type=detail, loc=(e.option,), input=options.get(e.option))],
        ) from None


def _bounded_json(value: object) -> object:
    problem = json_bound_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


DeviceName = Annotated[
    str, Field(pattern=DEVICE_NAME_PATTERN.pattern, description="Lower-case name; also its queue")
]
Transport = Literal["serial", "http-poll"]
Codec = Literal["line", "raw", "frame"]
# After the bounds, so the document still shows them as minimum and maximum.
AcceptWholeFloat = BeforeValidator(_whole_number)
Baudrate = Annotated[int, Field(ge=300, le=4_000_000), AcceptWholeFloat]
Base64Text = Annotated[
    str,
    AfterValidator(_base64_text),
    Field(description="Base64 bytes", json_schema_extra={"pattern": BASE64_PATTERN}),
]
Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX), AcceptWholeFloat]
_FREE_JSON_LIMITS = f"at most {MAX_JSON_DEPTH} levels deep and {MAX_JSON_BYTES} bytes as JSON"
# Free-form JSON a client chooses: bounded, so no reader of it later can be broken by it.
FreeJson = Annotated[
    Any, AfterValidator(_bounded_json), Field(description=f"Any JSON value, {_FREE_JSON_LIMITS}")
]


DeviceOptions = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_json),
    AfterValidator(_checked_options),
    Field(
        description="Serial settings and allowances: bytesize (5-8), parity (N, E, O, M, S), "
        "stopbits (1, 1.5, 2), rtscts, xonxoff, python (true/false), line_ending "
        '("\\n", "\\r\\n", "\\r"), idle_ms, settle_s, raw_multiline, reset (README); '
        f"{_FREE_JSON_LIMITS}"
    ),
]
HostName = Annotated[
    str,
    Field(
        pattern=HOST_NAME_PATTERN.pattern,
        description="The host agent that serves the device (`hwq host --name`)",
    ),
]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class StrictModel(BaseModel):
    """A JSON body: exact types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class DeviceCreate(StrictModel):
    """Register a device."""

    name: DeviceName
    transport: Transport = "serial"
    address: str | None = Field(None, description="pyserial URL or port; none for http-poll")
    baudrate: Baudrate = 115200
    codec: Codec = "line"
    options: DeviceOptions = Field(default_factory=dict)
    host: HostName | None = Field(
        None, description="Its host agent; left out: the machine the API runs on; null: none"
    )


# Settings a PATCH may leave out but not set to null.
_NOT_NULLABLE = ("name", "transport", "baudrate", "codec", "options")


def _null_only_for_address(schema: dict[str, Any]) -> None:
    # The fields default to None only to tell "left out" apart; the document says null is
    # refused by leaving null out of their types.
    for name in _NOT_NULLABLE:
        field = schema["properties"][name]
        field.pop("default", None)
        (kept,) = [option for option in field.pop("anyOf") if option != {"type": "null"}]
        field.update(kept)


class DeviceUpdate(StrictModel):
    """Change a device's settings, or rename it with `name`; absent fields stay as they are."""

    model_config = ConfigDict(json_schema_extra=_null_only_for_address)

    name: DeviceName | None = None
    transport: Transport | None = None
    address: str | None = None
    baudrate: Baudrate | None = None
    codec: Codec | None = None
    options: DeviceOptions | None = None
    host: HostName | None = Field(None, description="Move it to another host agent; null: none")

    @field_validator(*_NOT_NULLABLE, mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only `address` and `host` can be cleared; for the rest null would mean nothing sensible.
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


class ReadSpec(StrictModel):
    """When a reply ends: at a byte sequence, after a count, or after a silence."""

    until: Annotated[Base64Text, Field(json_schema_extra={"minLength": 1})] | None = None
    bytes: Annotated[int, Field(ge=1, le=MAX_READ_BYTES), AcceptWholeFloat] | None = None
    idle_ms: Annotated[int, Field(ge=1, le=MAX_IDLE_MS), AcceptWholeFloat] | None = None

    @field_validator("until")
    @classmethod
    def _until_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not base64.b64decode(value):
            raise ValueError("must name at least one byte")
        return value


class FramePayload(StrictModel):
    """A standard frame request (DESIGN §5)."""

    command_id: Annotated[int, Field(ge=0, le=255), AcceptWholeFloat]
    args: list[Int32] = Field(default_factory=list, max_length=MAX_FRAME_ARGS)


class _CommandFields(StrictModel):
    """What every kind of command may say besides its payload."""

    timeout_s: Seconds = Field(5.0, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)
    expires_s: Seconds | None = Field(None, gt=0, description="Expire if not dispatched by then")
    idempotent: bool = Field(False, description="Safe to run again if its worker vanishes")
    analysis: AnalysisRequest | None = None
    read: ReadSpec | None = None


class LineCommand(_CommandFields):
    """A text line; the reply is one line."""

    kind: Literal["line"]
    payload: Annotated[
        str,
        Field(
            max_length=MAX_LINE_CHARS,
            description="One line, without its terminator",
            json_schema_extra={"pattern": SINGLE_LINE_PATTERN},
        ),
        AfterValidator(_single_line),
    ]


class RawCommand(_CommandFields):
    """Bytes as base64; `read` says when the reply ends, `read: null` that none is read."""

    kind: Literal["raw"]
    payload: Base64Text


def write_only(command: BaseModel) -> bool:
    """Whether a command said `read: null`: it writes and expects nothing (DESIGN §3)."""
    return "read" in command.model_fields_set and getattr(command, "read", None) is None


class FrameCommand(_CommandFields):
    """A standard frame; the reply is `{status, values}`."""

    kind: Literal["frame"]
    payload: FramePayload


class PythonCommand(_CommandFields):
    """A program run in a sandbox on the device's host; 409 unless the device allows it."""

    kind: Literal["python"]
    payload: str


class CommandSubmit(
    RootModel[
        Annotated[LineCommand | RawCommand | FrameCommand | PythonCommand, Discriminator("kind")]
    ]
):
    """Submit a command; `kind` decides what `payload` must be."""


class AnalysisSubmit(StrictModel):
    """The result of a manual analysis."""

    value: FreeJson


class QueryModel(BaseModel):
    """A query string: values arrive as text, so types are coerced, but names are checked."""

    model_config = ConfigDict(extra="forbid")


class CommandListQuery(QueryModel):
    """Filters and paging of command history."""

    device: DeviceName | None = None
    state: State | None = None
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)
    cursor: str | None = Field(
        None, pattern=CURSOR_SHAPE.pattern, description="`next_cursor` of the previous page"
    )


class CommandWaitQuery(QueryModel):
    """An optional long-poll."""

    wait: float | None = Field(
        None,
        ge=0,
        le=MAX_WAIT_S,
        allow_inf_nan=False,
        description="Return once the command settles, or after this many seconds",
    )

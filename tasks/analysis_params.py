"""What each built-in analyzer accepts as `params`: one strict model each, checked at submission.

A submission asks for `{analyzer, params}`; `tasks.analyzer_registry` checks the params against
the analyzer's model, so a bad param is refused with 422 naming it (`analysis.params.min`)
instead of turning into an error verdict once the reply is in.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_serializer,
)

from tasks.json_bounds import json_bound_problem

# Longest `regex` pattern: a pattern is a question about one reply, not a program.
MAX_PATTERN_CHARS = 1024
# Longest `equals` text.
MAX_EXPECTED_CHARS = 4096
# Longest JSON pointer a `json` check may give, and its shape (RFC 6901).
MAX_POINTER_CHARS = 1024
POINTER_PATTERN = r"^(/([^~/]|~[01])*)*$"


class AnalyzerParams(BaseModel):
    """An analyzer's params: exact types, no unknown names; unset ones are left out."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_serializer(mode="wrap")
    def _leave_out_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A params object is stored as the client sent it, not padded with nulls.
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if name in self.model_fields_set}


class NoParams(AnalyzerParams):
    """Manual analysis takes no params: a person records the verdict later."""


class NumberParams(AnalyzerParams):
    """Bounds the reply, read as a number, must lie within; either may be left out."""

    min: float | None = Field(
        default=None, allow_inf_nan=False, description="Lowest value that passes"
    )
    max: float | None = Field(
        default=None, allow_inf_nan=False, description="Highest value that passes; at least `min`"
    )

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be at least min ({low:g})")
        return value


class RegexParams(AnalyzerParams):
    """A Python regular expression searched for in the reply."""

    pattern: str = Field(
        min_length=1, max_length=MAX_PATTERN_CHARS, json_schema_extra={"format": "regex"}
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"is not a regular expression: {e}") from None
        return value


def _one_scalar(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One message for the field, not one per member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(
            f"must be a string of at most {MAX_EXPECTED_CHARS} characters, a number, "
            "true, false or null"
        ) from None


JsonScalar = Annotated[
    Annotated[str, Field(max_length=MAX_EXPECTED_CHARS)] | int | float | bool | None,
    WrapValidator(_one_scalar),
]


class EqualsParams(AnalyzerParams):
    """The text the reply must equal, surrounding blanks aside; a number or true/false too."""

    expected: JsonScalar


# Most values an `expect` analyzer may list.
MAX_EXPECTED_VALUES = 256


class JsonParams(AnalyzerParams):
    """A JSON-pointer check on a reply that is a JSON document: the value there `equals` the
    one given and/or (`exists`) is there or not; with neither, passes when there is a value."""

    pointer: str = Field(
        max_length=MAX_POINTER_CHARS,
        description='RFC 6901 pointer: "" (the whole document) or "/a/0"',
        json_schema_extra={"pattern": POINTER_PATTERN},
    )
    equals: Any = Field(default=None, description="The value expected there (any JSON)")
    exists: bool | None = Field(default=None, description="Whether a value must be there")

    @field_validator("pointer")
    @classmethod
    def _is_pointer(cls, value: str) -> str:
        if not re.fullmatch(POINTER_PATTERN, value):
            raise ValueError('must be "" or "/"-separated tokens, escaping only ~0 and ~1')
        return value

    @field_validator("equals")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        problem = json_bound_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ExpectParams(AnalyzerParams):
    """The texts the reply may be, surrounding blanks aside: it passes when it is one of them."""

    one_of: list[JsonScalar] = Field(min_length=1, max_length=MAX_EXPECTED_VALUES)

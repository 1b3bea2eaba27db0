"""What each analyzer accepts as `params`: one strict model per analyzer, checked at submission.

A submission asks for `{analyzer, params}`; the pair is one of the models below, told apart by
`analyzer`, so a bad param is refused with 422 naming it (`analysis.params.min`) instead of
turning into an error verdict once the reply is in. The API's document is built from them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_serializer,
)

from tasks.errors import ValidationFailed

# Longest `regex` pattern: a pattern is a question about one reply, not a program.
MAX_PATTERN_CHARS = 1024
# Longest `equals` text.
MAX_EXPECTED_CHARS = 4096


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


class _Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ManualAnalysis(_Analysis):
    """Record the verdict later with POST /commands/{id}/analysis."""

    analyzer: Literal["manual"]
    params: NoParams = Field(default_factory=lambda: NoParams())


class NumberAnalysis(_Analysis):
    """Read the reply as a number and say whether it lies within [min, max]."""

    analyzer: Literal["number"]
    params: NumberParams = Field(default_factory=lambda: NumberParams())


class RegexAnalysis(_Analysis):
    """Search the reply for `pattern` and return the groups it captured."""

    analyzer: Literal["regex"]
    params: RegexParams


class EqualsAnalysis(_Analysis):
    """Compare the reply with `expected`."""

    analyzer: Literal["equals"]
    params: EqualsParams


# How a reply is analysed: a registered analyzer with its params, or `manual`.
AnalysisRequest = Annotated[
    ManualAnalysis | NumberAnalysis | RegexAnalysis | EqualsAnalysis, Discriminator("analyzer")
]
_REQUESTS = (ManualAnalysis, NumberAnalysis, RegexAnalysis, EqualsAnalysis)
# Every analyzer name a submission may give, manual included.
ANALYZER_NAMES: tuple[str, ...] = tuple(
    get_args(request.model_fields["analyzer"].annotation)[0] for request in _REQUESTS
)
_REQUEST = TypeAdapter(AnalysisRequest)


def validated_analysis(analysis: dict[str, Any]) -> dict[str, Any]:
    """`analysis` checked against its analyzer's declared params; raises ValidationFailed."""
    try:
        return _REQUEST.validate_python(analysis).model_dump()
    except ValidationError as e:
        errors = [_field_problem(error) for error in e.errors(include_url=False)]
        fields = ", ".join(sorted({str(error["field"]) for error in errors}))
        raise ValidationFailed(f"invalid analysis: {fields}", errors) from None


def _field_problem(error: Any) -> dict[str, object]:
    if error["type"].startswith("union_tag_"):
        message = f"must be one of {', '.join(ANALYZER_NAMES)}"
        return {"field": "analysis.analyzer", "message": message}
    # The union puts the analyzer's name in front of every other location.
    loc = [str(part) for part in error["loc"][1:]]
    return {
        "field": ".".join(["analysis", *loc]),
        "message": error["msg"].removeprefix("Value error, "),
    }

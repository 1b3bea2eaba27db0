"""Which analyzers exist: the built-ins and whatever installed packages register.

A package registers an analyzer with an entry point in the `hwq.analyzers` group whose value
is an `Analyzer` (or any object with an `analyze` function and a pydantic `params` model):

    [project.entry-points."hwq.analyzers"]
    within_percent = "my_package.analyzers:WITHIN_PERCENT"

They are read once per process, when this module is first imported: a package installed
later counts once the API and the server worker restart. A submission's `{analyzer, params}`
is checked here against the analyzer's params model (422 naming the param).
"""

from __future__ import annotations

import logging
import operator
import re
from functools import reduce
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
)

from tasks.analysis_params import NoParams
from tasks.analyzers import BUILT_IN_ANALYZERS, Analyzer
from tasks.errors import ValidationFailed

log = logging.getLogger("hwq.analysis")

ENTRY_POINT_GROUP = "hwq.analyzers"
MANUAL = "manual"
# What an analyzer may be called: it becomes part of the API's document and of URLs in it.
ANALYZER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _discover() -> dict[str, Analyzer]:
    """The built-ins, then every well-formed analyzer an installed package registers."""
    found = dict(BUILT_IN_ANALYZERS)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BUILT_IN_ANALYZERS or point.name == MANUAL:
            continue  # the built-ins' own entry points, or a plugin that may not replace one
        if not ANALYZER_NAME.match(point.name):
            log.warning("analyzer not registered: bad name", extra={"analyzer": point.name})
            continue
        try:
            loaded = point.load()
            analyzer = Analyzer(loaded.analyze, loaded.params, getattr(loaded, "description", ""))
            if not (callable(analyzer.analyze) and issubclass(analyzer.params, BaseModel)):
                raise TypeError("needs an analyze function and a pydantic params model")
        except Exception as e:  # a broken plugin must not stop hwq from starting
            log.error("analyzer not registered: %s", e, extra={"analyzer": point.name})
            continue
        found[point.name] = analyzer
    return found


ANALYZERS: dict[str, Analyzer] = _discover()
# Every analyzer name a submission may give, manual included.
ANALYZER_NAMES: tuple[str, ...] = (MANUAL, *ANALYZERS)


class _Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ManualAnalysis(_Analysis):
    """Record the verdict later with POST /commands/{id}/analysis."""

    analyzer: Literal["manual"]
    params: NoParams = Field(default_factory=lambda: NoParams())


def _request_model(name: str, analyzer: Analyzer) -> type[_Analysis]:
    """`{analyzer: name, params}`, params optional when the analyzer needs none."""
    required = any(field.is_required() for field in analyzer.params.model_fields.values())
    params: Any = (analyzer.params, ...) if required else (
        analyzer.params, Field(default_factory=analyzer.params))  # fmt: skip
    name_type: Any = Literal[name]
    model: type[_Analysis] = create_model(
        "".join(part.title() for part in name.split("_")) + "Analysis",
        __base__=_Analysis,
        __doc__=analyzer.description or f"The {name} analyzer",
        analyzer=(name_type, ...),
        params=params,
    )
    return model


_REQUESTS = (ManualAnalysis, *(_request_model(n, a) for n, a in ANALYZERS.items()))

if TYPE_CHECKING:
    AnalysisRequest: TypeAlias = Annotated[ManualAnalysis, Discriminator("analyzer")]
else:
    # How a reply is analysed: a registered analyzer with its params, or `manual`; the union
    # is built from what is registered, so the API's document lists plugins too.
    AnalysisRequest = Annotated[reduce(operator.or_, _REQUESTS), Discriminator("analyzer")]
_REQUEST = TypeAdapter(AnalysisRequest)


def validated_analysis(analysis: dict[str, Any]) -> dict[str, Any]:
    """`analysis` checked against its analyzer's declared params; raises ValidationFailed."""
    try:
        checked: BaseModel = _REQUEST.validate_python(analysis)
    except ValidationError as e:
        errors = [_field_problem(error) for error in e.errors(include_url=False)]
        fields = ", ".join(sorted({str(error["field"]) for error in errors}))
        raise ValidationFailed(f"invalid analysis: {fields}", errors) from None
    return checked.model_dump()


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

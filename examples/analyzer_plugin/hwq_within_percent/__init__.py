"""An analyzer of one's own: the reply, read as a number, lies within `percent` of `target`.

Install it beside hwq (`pip install ./examples/analyzer_plugin`), restart the API and the
server worker, and submit `"analysis": {"analyzer": "within_percent", "params": {"target": 10,
"percent": 5}}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tasks.analyzers import Analyzer, reply_text


class WithinPercentParams(BaseModel):
    """What a submission gives: checked when it is submitted (422 naming a bad one)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    target: float = Field(allow_inf_nan=False, description="The value aimed at")
    percent: float = Field(gt=0, le=100, description="How far off it may be, in percent")


def within_percent(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The verdict: a JSON object with `passed`, as every analyzer's."""
    text = reply_text(response).strip()
    try:
        value = float(text)
    except ValueError:
        return {"passed": False, "reason": f"not a number: {text[:80]!r}"}
    target, percent = float(params["target"]), float(params["percent"])
    off = abs(value - target) / abs(target) * 100 if target else abs(value) * 100
    return {"value": value, "off_percent": round(off, 6), "passed": off <= percent}


WITHIN_PERCENT = Analyzer(within_percent, WithinPercentParams, "A number within percent of target")

"""Registered analyzers: functions from a command's response to a recorded verdict."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tasks.analysis_params import validated_analysis

Analyzer = Callable[[dict[str, Any], dict[str, Any]], Any]
MANUAL = "manual"
# Analyzers see at most this many characters of a reply, so an analysis costs a bounded time;
# a verdict on a longer reply says `"truncated": true`.
MAX_ANALYSED_CHARS = 64 * 1024


def _full_reply_text(response: dict[str, Any]) -> str:
    if "text" in response:
        return str(response["text"])
    if "stdout" in response:
        return str(response["stdout"])
    return str(response.get("values", response.get("data", "")))


def _reply_text(response: dict[str, Any]) -> str:
    return _full_reply_text(response)[:MAX_ANALYSED_CHARS]


def analyze_number(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Parse the reply as a number and say whether it lies within [min, max]."""
    text = _reply_text(response).strip()
    try:
        value = float(text)
    except ValueError:
        return {"value": None, "within": False, "reason": f"not a number: {text[:80]!r}"}
    low, high = params.get("min"), params.get("max")
    within = (low is None or value >= low) and (high is None or value <= high)
    return {"value": value, "within": within}


def analyze_regex(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Search the reply for a pattern and return the groups it captured."""
    match = re.search(str(params["pattern"]), _reply_text(response))
    return {"match": match is not None, "groups": list(match.groups()) if match else []}


def analyze_equals(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Compare the reply with an expected text."""
    return {"equal": _reply_text(response).strip() == str(params.get("expected", "")).strip()}


ANALYZERS: dict[str, Analyzer] = {
    "number": analyze_number,
    "regex": analyze_regex,
    "equals": analyze_equals,
}


def check_analysis_request(analysis: dict[str, Any] | None) -> None:
    """Refuse an analysis naming no registered analyzer, or params it does not declare.

    Each analyzer's params are declared in tasks.analysis_params.
    """
    if analysis is not None:
        validated_analysis(analysis)


def run_analyzer(analysis: dict[str, Any], response: dict[str, Any]) -> Any:
    """The verdict of the analyzer a command asked for; errors become part of the verdict."""
    analyzer = ANALYZERS[analysis["analyzer"]]
    try:
        verdict = analyzer(response or {}, analysis.get("params") or {})
    except Exception as e:  # an analyzer's bug must not strand the command in responded
        return {"error": f"{type(e).__name__}: {e}"}
    if isinstance(verdict, dict) and len(_full_reply_text(response or {})) > MAX_ANALYSED_CHARS:
        verdict = {**verdict, "truncated": True}
    return verdict

"""Running the analyzer a command asked for: its verdict, or the error it ran into."""

from __future__ import annotations

from typing import Any

from tasks.analyzer_registry import ANALYZERS, MANUAL, validated_analysis
from tasks.analyzers import MAX_ANALYSED_CHARS, full_reply_text

__all__ = ["ANALYZERS", "MANUAL", "MAX_ANALYSED_CHARS", "check_analysis_request", "run_analyzer"]


def check_analysis_request(analysis: dict[str, Any] | None) -> None:
    """Refuse an analysis naming no registered analyzer, or params it does not declare."""
    if analysis is not None:
        validated_analysis(analysis)


def run_analyzer(analysis: dict[str, Any], response: dict[str, Any]) -> Any:
    """The verdict of the analyzer a command asked for; errors become part of the verdict.

    An analyzer that raises leaves the reply as it is: the verdict records the error and
    does not pass.
    """
    analyzer = ANALYZERS.get(analysis["analyzer"])
    if analyzer is None:
        return {"error": f"no analyzer named {analysis['analyzer']!r} here", "passed": False}
    try:
        verdict = analyzer.analyze(response or {}, analysis.get("params") or {})
    except Exception as e:  # an analyzer's bug must not strand the command in responded
        return {"error": f"{type(e).__name__}: {e}", "passed": False}
    if isinstance(verdict, dict) and len(full_reply_text(response or {})) > MAX_ANALYSED_CHARS:
        verdict = {**verdict, "truncated": True}
    return verdict

"""Whether a finished command's analysis failed: `hwq run` exits with its own status then."""

from __future__ import annotations

from typing import Any

# `hwq run`'s exit status when the command was answered but its analysis did not pass
# (1 stays "the command did not end done"; 2 is click's usage error).
VERDICT_FAILED_EXIT = 3


def failed_verdict(command: dict[str, Any]) -> str | None:
    """Why the command's verdict failed (`passed: false`, or an analyzer error), or None."""
    analysis = command.get("analysis") or {}
    verdict = analysis.get("value")
    if not isinstance(verdict, dict):
        return None
    if "error" in verdict:
        return f"the {analysis.get('analyzer')} analysis failed: {verdict['error']}"
    if verdict.get("passed") is False:
        return f"the {analysis.get('analyzer')} verdict did not pass"
    return None

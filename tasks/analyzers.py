"""The built-in analyzers: from a command's response to a verdict, each with `passed`.

Each is an `Analyzer`: the function, the params model submissions are checked against, and a
line saying what it does. pyproject.toml registers them under the `hwq.analyzers` entry point
group, where a package of one's own adds more (README, "Writing an analyzer").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tasks.analysis_params import EqualsParams, ExpectParams, JsonParams, NumberParams, RegexParams

# Analyzers see at most this many characters of a reply, so an analysis costs a bounded time;
# a verdict on a longer reply says `"truncated": true`.
MAX_ANALYSED_CHARS = 64 * 1024


@dataclass(frozen=True)
class Analyzer:
    """A registered analyzer: `analyze(response, params)` gives the verdict, a JSON object
    with a `passed` boolean; `params` is the pydantic model its params must fit."""

    analyze: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    params: type[BaseModel]
    description: str = ""


def full_reply_text(response: dict[str, Any]) -> str:
    """The reply as text: a line's text, a program's stdout, else its values or data."""
    if "text" in response:
        return str(response["text"])
    if "stdout" in response:
        return str(response["stdout"])
    return str(response.get("values", response.get("data", "")))


def reply_text(response: dict[str, Any]) -> str:
    """The reply as text, cut to what an analyzer may see."""
    return full_reply_text(response)[:MAX_ANALYSED_CHARS]


def analyze_number(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Parse the reply as a number and say whether it lies within [min, max]."""
    text = reply_text(response).strip()
    try:
        value = float(text)
    except ValueError:
        reason = f"not a number: {text[:80]!r}"
        return {"value": None, "within": False, "passed": False, "reason": reason}
    low, high = params.get("min"), params.get("max")
    within = (low is None or value >= low) and (high is None or value <= high)
    return {"value": value, "within": within, "passed": within}


def analyze_regex(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Search the reply for a pattern and return the groups it captured."""
    match = re.search(str(params["pattern"]), reply_text(response))
    groups = list(match.groups()) if match else []
    return {"match": match is not None, "groups": groups, "passed": match is not None}


def analyze_equals(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Compare the reply with an expected text."""
    equal = reply_text(response).strip() == _as_text(params.get("expected", ""))
    return {"equal": equal, "passed": equal}


def analyze_expect(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Say whether the reply is one of the listed values."""
    text = reply_text(response).strip()
    return {"value": text, "passed": text in {_as_text(v) for v in params["one_of"]}}


def analyze_json(response: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Read the reply as JSON and check the value a JSON pointer finds there."""
    try:
        document = json.loads(reply_text(response))
    except ValueError as e:
        return {"found": False, "passed": False, "reason": f"not JSON: {e}"}
    found, value = _resolve(document, str(params["pointer"]))
    verdict: dict[str, Any] = {"found": found}
    if found:
        verdict["value"] = value
    # Each check given must hold; with none, the pointer must find a value.
    checks = []
    if "exists" in params:
        checks.append(found == params["exists"])
    if "equals" in params:
        checks.append(found and value == params["equals"])
    verdict["passed"] = all(checks) if checks else found
    return verdict


def _as_text(value: Any) -> str:
    # true/false/null as JSON spells them, so `expected: true` matches a reply "true".
    return value.strip() if isinstance(value, str) else json.dumps(value)


def _resolve(document: Any, pointer: str) -> tuple[bool, Any]:
    """Follow an RFC 6901 pointer: whether it found a value, and the value."""
    if pointer == "":
        return True, document
    value = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return False, None
    return True, value


NUMBER = Analyzer(analyze_number, NumberParams, "Read the reply as a number within [min, max]")
REGEX = Analyzer(analyze_regex, RegexParams, "Search the reply for `pattern`; its groups")
EQUALS = Analyzer(analyze_equals, EqualsParams, "Compare the reply with `expected`")
JSON = Analyzer(analyze_json, JsonParams, "Check the value a JSON pointer finds in the reply")
EXPECT = Analyzer(analyze_expect, ExpectParams, "The reply is one of `one_of`")
# Known without any entry point, so hwq works even from a source tree that is not installed.
BUILT_IN_ANALYZERS = {
    "number": NUMBER,
    "regex": REGEX,
    "equals": EQUALS,
    "json": JSON,
    "expect": EXPECT,
}

"""Schemathesis hooks of the OpenAPI conformance test (SCHEMATHESIS_HOOKS names this module)."""

from __future__ import annotations

import os
from typing import Any

import schemathesis

# Long-polls the run makes are held this long at most. The API honours every `wait` the
# document allows (up to 60 s); a run that sat out each one on a command that never settles
# (on a device with no worker) would not fit CI's budget.
SHORT_WAIT_S = 2.0
# The document's bound on `wait`: values beyond it must still be sent, to see them refused.
MAX_WAIT_S = 60.0


# What a boolean query parameter may say (pydantic's lax booleans).
_BOOLEAN_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}

# Names the run's own token id, which a generated revocation is turned away from.
OWN_TOKEN_ID_VARIABLE = "HWQ_CONFORMANCE_OWN_TOKEN_ID"


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    """Shorten long waits the document allows; leave invalid ones to be refused; end streams
    at what they hold; never revoke the token the run itself uses (every later call would be a
    401)."""
    own_id = os.environ.get(OWN_TOKEN_ID_VARIABLE)
    path = case.path_parameters or {}
    if case.method.upper() == "DELETE" and own_id and str(path.get("token_id")) == own_id:
        path["token_id"] = int(own_id) + 1_000_000
    follow = (case.query or {}).get("follow")
    if case.path.endswith("/stream") and (follow is None or _boolean(follow)):
        # A followed stream never ends; the rest of the stream's contract is the same. An
        # invalid `follow` is left to be refused.
        case.query = {**(case.query or {}), "follow": "false"}
    seconds = _seconds((case.query or {}).get("wait"))
    if seconds is not None and SHORT_WAIT_S < seconds <= MAX_WAIT_S:
        case.query["wait"] = SHORT_WAIT_S


def _boolean(value: object) -> bool:
    """Whether a generated query value is one the API takes as true or false."""
    if isinstance(value, bool):
        return True
    return isinstance(value, str) and value.lower() in _BOOLEAN_WORDS


def _seconds(value: object) -> float | None:
    """A generated `wait` as seconds, whether drawn as a number or as its text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@schemathesis.hook
def filter_failure(
    context: schemathesis.HookContext,
    failure: Any,
    case: schemathesis.Case,
    response: schemathesis.Response,
) -> bool:
    """Keep every failure but the one refusal JSON Schema cannot state: `number`'s min > max.

    The document says so in prose (NumberParams.max: "at least `min`"); no keyword compares
    two fields, so a generator following the schema alone sends such a pair as valid.
    """
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code != 422:
        return True
    try:
        problem = response.json()
    except ValueError:
        return True
    # A key the run drew before, sent again with another body: refused by the server's memory
    # of earlier requests, which no schema can state.
    if str(problem.get("type", "")).endswith("/idempotency-key-reused"):
        return False
    errors = problem.get("errors") or []
    return not errors or not all(_beyond_json_schema(error) for error in errors)


def _beyond_json_schema(error: dict[str, Any]) -> bool:
    """A refusal the document states in prose because JSON Schema cannot: `number`'s min > max,
    a command that does not fit its device's codec (a setting of the device, DESIGN §3), a reply
    that does not fit its command, a legacy command without the field it needs."""
    field, message = error.get("field"), str(error.get("message", ""))
    if field == "analysis.params.max":
        return message.startswith("must be at least min")
    if field in ("kind", "payload"):
        return message.startswith("device ")
    # A polling device's reply that does not fit its command's kind, and the legacy protocol's
    # rules on which of its optional fields each of its commands needs.
    return message.startswith(("a reply to a", "the legacy protocol needs"))

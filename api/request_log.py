"""One structured log line per request; the Authorization header and tokens are never logged."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from api.auth import current_principal

log = logging.getLogger("hwq.api")

# Path parameters that name what a request is about, and the log field each becomes.
_NAMED_BY_PATH = {"name": "device", "command_id": "command"}


def note(**fields: str) -> None:
    """Add fields to the current request's log line (a new command's id, say)."""
    g.setdefault("hwq_log_fields", {}).update(fields)


def _start_clock() -> None:
    g.hwq_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    level = logging.WARNING if response.status_code >= 500 else logging.INFO
    # Gathering the fields costs more than the rest of a small request's bookkeeping.
    if not log.isEnabledFor(level):
        return response
    started = g.get("hwq_started")
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    principal = current_principal()
    fields: dict[str, object] = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "duration_ms": round(duration_ms, 1),
        "principal": principal.name if principal else None,
    }
    for arg, field in _NAMED_BY_PATH.items():
        if request.view_args and arg in request.view_args:
            fields[field] = request.view_args[arg]
    fields.update(g.get("hwq_log_fields", {}))
    log.log(
        level,
        "%s %s %s %.1fms",
        request.method,
        request.path,
        response.status_code,
        duration_ms,
        extra=fields,
    )
    return response


def init_request_log(app: Flask) -> None:
    """Time every request and log it once it has its response."""
    # Registered first so the clock also runs for requests refused by later hooks.
    app.before_request(_start_clock)
    app.after_request(_log_request)

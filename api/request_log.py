"""One structured log line per request; the Authorization header and tokens are never logged."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from api.auth import current_principal
from tasks.auth import Principal

log = logging.getLogger("hwq.api")

# Path parameters that name what a request is about, and the log field each becomes.
_NAMED_BY_PATH = {"name": "device", "command_id": "command"}


def note(**fields: str) -> None:
    """Add fields to the current request's log line (a new command's id, say)."""
    g.setdefault("hwq_log_fields", {}).update(fields)


# Where the front door leaves the time a request arrived, so durations include its wait.
STARTED_ENVIRON_KEY = "hwq.started"


def _start_clock() -> None:
    g.hwq_started = request.environ.get(STARTED_ENVIRON_KEY) or time.perf_counter()


def log_request(
    method: str,
    path: str,
    status: int,
    started: float | None,
    principal: Principal | None,
    fields: dict[str, object],
) -> None:
    """The one log line of a request, whoever answered it."""
    if not _logged(status):
        return
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
    line: dict[str, object] = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 1),
        "principal": principal.name if principal else None,
        **fields,
    }
    log.log(_level(status), "%s %s %s %.1fms", method, path, status, duration_ms, extra=line)


def _level(status: int) -> int:
    return logging.WARNING if status >= 500 else logging.INFO


def _logged(status: int) -> bool:
    return log.isEnabledFor(_level(status))


def _log_request(response: Response) -> Response:
    # Gathering the fields costs more than the rest of a small request's bookkeeping.
    if not _logged(response.status_code):
        return response
    fields: dict[str, object] = {}
    for arg, field in _NAMED_BY_PATH.items():
        if request.view_args and arg in request.view_args:
            fields[field] = request.view_args[arg]
    fields.update(g.get("hwq_log_fields", {}))
    log_request(
        request.method,
        request.path,
        response.status_code,
        g.get("hwq_started"),
        current_principal(),
        fields,
    )
    return response


def init_request_log(app: Flask) -> None:
    """Time every request and log it once it has its response."""
    # Registered first so the clock also runs for requests refused by later hooks.
    app.before_request(_start_clock)
    app.after_request(_log_request)

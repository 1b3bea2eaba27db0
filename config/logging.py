"""Structured logs: one line per event, with the device and command it concerns."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# Field names whose values are never printed, whatever passes them in.
_SECRET_NAMES = ("token", "password", "authorization", "secret", "auth")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or key.startswith("_"):
            continue
        fields[key] = "***" if any(s in key.lower() for s in _SECRET_NAMES) else value
    return fields


class LogfmtFormatter(logging.Formatter):
    """`time level logger message key=value…`, readable by people and by grep."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        message = json.dumps(record.getMessage())
        parts = [f"{stamp}Z", record.levelname.lower(), record.name, message]
        parts += [f"{k}={json.dumps(v, default=str)}" for k, v in _fields(record).items()]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


# Libraries whose INFO lines say nothing a user of hwq needs (see configure_logging).
QUIET_LIBRARY_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: str = "INFO", as_json: bool = False, **context: object) -> None:
    """Send every log line to stderr in one format; `context` is added to every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else LogfmtFormatter())
    if context:
        handler.addFilter(_ContextFilter(context))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The HTTP client library logs every request's URL at INFO: noise in `hwq up`'s terminal
    # (its readiness probes), and a URL may carry what should not be logged.
    for chatty in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


class _ContextFilter(logging.Filter):
    def __init__(self, context: dict[str, object]) -> None:
        super().__init__()
        self.context = context

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True

"""hwq's own INFO lines are kept; the HTTP client library's request lines (every URL) are not."""

from __future__ import annotations

import logging

from config.logging import configure_logging


def test_the_http_client_library_logs_only_warnings() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        assert logging.getLogger("hwq.up").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

"""Serves the API under granian: HTTP handled in Rust, the Flask app on a pool of threads.

A long-poll is a thread blocked on Redis, not a CPU, so one worker process with many threads
holds them all. Granian parses and writes HTTP outside the interpreter: a request costs the
API process about a third of a millisecond less than under a pure-Python server
(bench/README.md), which is most of what a submission or a long-poll spends outside hwq.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from config import Settings, load_settings
from config.logging import configure_logging
from worker_host.launcher import end_with_parent
from worker_host.startup_objects import freeze_startup_objects

# One process, many threads: the SQLite writer and the caches are per process.
API_WORKER_PROCESSES = 1
# How long in-flight requests get to finish once the server is told to stop.
STOP_GRACE_S = 5


class DropThreadCountAdvice(logging.Filter):
    """Drops granian's warning that many Python threads may contend for the interpreter.

    It fires whenever the thread pool exceeds twice the cores. hwq's threads are mostly
    long-polls blocked on Redis, not contenders for the CPU, and a warning in every log of a
    correct setup would teach people to ignore warnings.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Configuration allows spawning up to")


# Granian's own messages go through hwq's log handler, so every line has one format.
_GRANIAN_LOGGERS = {
    "filters": {"thread_count_advice": {"()": f"{__name__}.DropThreadCountAdvice"}},
    "loggers": {
        "_granian": {"handlers": [], "propagate": True, "filters": ["thread_count_advice"]},
        "granian.access": {"handlers": [], "propagate": True},
    },
}


def worker_app() -> Any:
    """The Flask app, built in the server's worker process, which ends when the server does."""
    end_with_parent()
    # Settings and logging are made again here, so a worker started afresh (not forked) has them.
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, role="api")
    # Imported by name: the api package sits on top and nothing below imports it.
    app = importlib.import_module("api").create_app()
    freeze_startup_objects()
    return app


class ApiServer:
    """Granian serving `api.create_app()` over WSGI on `host:port`."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port

    def run(self) -> None:
        """Serve until told to stop (SIGINT or SIGTERM)."""
        Granian(
            f"{__name__}:worker_app",
            factory=True,
            interface=Interfaces.WSGI,
            address=self.host,
            port=self.port,
            workers=API_WORKER_PROCESSES,
            blocking_threads=self.settings.api_threads,
            log_level=LogLevels(self.settings.log_level.lower()),
            log_dictconfig=_GRANIAN_LOGGERS,
            log_access=False,
            workers_kill_timeout=STOP_GRACE_S,
        ).serve()

"""Serves the API under granian: HTTP handled in Rust, hwq's ASGI front door in Python.

The front door (api/front.py) holds long-polls on asyncio and reads bodies itself, bounded in
size and time; only a whole, allowed request gets one of the Flask app's threads. Granian
parses and writes HTTP outside the interpreter, so a request costs the API process less than
under a pure-Python server (bench/README.md).
"""

from __future__ import annotations

from typing import Any

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from config import Settings, load_settings
from config.logging import configure_logging
from hwq.launcher import end_with_parent
from hwq.startup_objects import freeze_startup_objects

# One process, many threads: the SQLite writer and the caches are per process.
API_WORKER_PROCESSES = 1
# How long in-flight requests get to finish once the server is told to stop.
STOP_GRACE_S = 5
# Requests the worker takes in beyond held waits and busy threads: granian stops accepting
# connections past its backpressure, and /health must still get in while every wait is held.
BACKPRESSURE_HEADROOM = 256


# Granian's own messages go through hwq's log handler, so every line has one format.
_GRANIAN_LOGGERS = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": True},
    },
}


def worker_app() -> Any:
    """The front door around the Flask app, built in the server's worker process, which ends
    when the server does."""
    end_with_parent()
    # Settings and logging are made again here, so a worker started afresh (not forked) has them.
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, role="api")
    # Imported here, in the worker: the server's main process never needs Flask.
    from api.front import create_front

    front = create_front(settings)
    freeze_startup_objects()
    return front


class ApiServer:
    """Granian serving the front door (ASGI, no lifespan) on `host:port`."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port

    def run(self) -> None:
        """Serve until told to stop (SIGINT or SIGTERM)."""
        serve_with_granian(
            f"{__name__}:worker_app",
            self.settings,
            self.host,
            self.port,
            Interfaces.ASGINL,
            backpressure=self.settings.max_waits
            + self.settings.api_threads
            + BACKPRESSURE_HEADROOM,
        )


def serve_with_granian(
    target: str, settings: Settings, host: str, port: int, interface: Interfaces, **options: Any
) -> None:
    """Serve the app `target` makes with granian in one worker process, with hwq's logging,
    until told to stop (SIGINT or SIGTERM)."""
    Granian(
        target,
        factory=True,
        interface=interface,
        address=host,
        port=port,
        workers=API_WORKER_PROCESSES,
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=_GRANIAN_LOGGERS,
        log_access=False,
        workers_kill_timeout=STOP_GRACE_S,
        **options,
    ).serve()

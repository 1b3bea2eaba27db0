"""Serves the Socket.IO gateway under granian, the server the API runs on.

Granian serves ASGI websockets as well as plain HTTP (Engine.IO's long-polling), so the
gateway needs no server of its own: one HTTP stack to deploy, tune and update for both.
"""

from __future__ import annotations

from typing import Any

from granian import Granian
from granian.constants import Interfaces
from granian.log import LogLevels

from config import Settings, load_settings
from config.logging import configure_logging
from hwq.launcher import end_with_parent

# One process: the rx readers and the rooms of connected clients live in its memory.
GATEWAY_WORKER_PROCESSES = 1
# How long open connections get to close once the server is told to stop.
STOP_GRACE_S = 5

_GRANIAN_LOGGERS = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": True},
    },
}


def worker_app() -> Any:
    """The gateway app, built in granian's worker process, which ends when the server does."""
    end_with_parent()
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, role="gateway")
    from api.gateway import create_gateway

    return create_gateway(settings)


class GatewayServer:
    """Granian serving the gateway (ASGI with lifespan, websockets on) on `host:port`."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings = settings
        self.host = host
        self.port = port

    def run(self) -> None:
        """Serve until told to stop (SIGINT or SIGTERM)."""
        Granian(
            f"{__name__}:worker_app",
            factory=True,
            interface=Interfaces.ASGI,
            address=self.host,
            port=self.port,
            workers=GATEWAY_WORKER_PROCESSES,
            websockets=True,
            log_level=LogLevels(self.settings.log_level.lower()),
            log_dictconfig=_GRANIAN_LOGGERS,
            log_access=False,
            workers_kill_timeout=STOP_GRACE_S,
        ).serve()

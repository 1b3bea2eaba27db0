"""Serves the Socket.IO gateway under granian, the server the API runs on.

Granian serves ASGI websockets as well as plain HTTP (Engine.IO's long-polling), so the
gateway needs no server of its own: one HTTP stack to deploy, tune and update for both. One
process: the rx readers and the rooms of connected clients live in its memory.
"""

from __future__ import annotations

from typing import Any

from granian.constants import Interfaces

from config import Settings, load_settings
from config.logging import configure_logging
from hwq.api_server import serve_with_granian
from hwq.launcher import end_with_parent


def worker_app() -> Any:
    """The gateway app, built in granian's worker process, which ends when the server does."""
    end_with_parent()
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, role="gateway")
    from api.gateway import create_gateway

    return create_gateway(settings)


def serve_gateway(settings: Settings, host: str, port: int) -> None:
    """Serve the gateway (ASGI with lifespan, websockets on) until SIGINT or SIGTERM."""
    serve_with_granian(
        f"{__name__}:worker_app", settings, host, port, Interfaces.ASGI, websockets=True
    )

"""`hwq gateway`: the Peripheral Manager's Socket.IO API, for browser tools and scripts."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None, help="Port (HWQ_GATEWAY_PORT, default 3000).")
def gateway(host: str, port: int | None) -> None:
    """Serve the Socket.IO gateway (events list-devices … send-command, rx channels, a page)."""
    from config import load_settings
    from config.logging import configure_logging
    from hwq.gateway_server import serve_gateway

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json, role="gateway")
    serve_gateway(settings, host, port or settings.gateway_port)


COMMANDS: list[click.Command] = [gateway]

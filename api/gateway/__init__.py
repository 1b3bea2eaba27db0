"""`hwq gateway`: the Peripheral Manager's Socket.IO API over hwq (DESIGN §9).

An asyncio Socket.IO server (python-socketio 5.x: Socket.IO protocol 5 over Engine.IO 4, the
protocol of the JavaScript socket.io client 3.x and 4.x) as an ASGI app, with a small live
console at `GET /` whose socket.io client is shipped beside it (page/VENDORED.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import socketio

from api.gateway.console_link import ConsoleLink
from api.gateway.events import GatewayEvents
from api.gateway.host_ports import HostPorts
from api.gateway.rx_fanout import RxFanout
from config import Settings
from tasks.connections import async_redis_client
from tasks.service import HwqService

PAGE_DIR = Path(__file__).resolve().parent / "page"
# Threads for the synchronous service calls; a send-command holds one until its reply.
GATEWAY_THREADS = 32
# Redis connections for the rx readers (each holds one in its blocking read) and port reads.
REDIS_CONNECTIONS = 512
# Largest Socket.IO message a client may send: a raw payload of 64 KiB as a list of numbers
# is about 4 bytes a byte, plus room for the rest of the event.
MAX_MESSAGE_BYTES = 512 * 1024


def create_gateway(settings: Settings, service: HwqService | None = None) -> Any:
    """The gateway as an ASGI app: Socket.IO under /socket.io/, the page at /, and /console
    leading to the API's browser console."""
    service = service or HwqService(settings)
    # Clients prove who they are with a token, not a cookie, so another site's page gains
    # nothing by connecting: cross-origin browsers are let in, as the ancestor's were.
    sio = socketio.AsyncServer(
        async_mode="asgi",
        cors_allowed_origins="*",
        max_http_buffer_size=MAX_MESSAGE_BYTES,
    )
    stream_client = async_redis_client(settings, max_connections=REDIS_CONNECTIONS)
    fanout = RxFanout(sio, stream_client, settings.key_prefix)
    GatewayEvents(sio, service, HostPorts(stream_client, settings.key_prefix), fanout,
                  GATEWAY_THREADS)  # fmt: skip
    static_files = {
        "/": {"filename": str(PAGE_DIR / "index.html"), "content_type": "text/html"},
        "/socket.io.min.js": {
            "filename": str(PAGE_DIR / "socket.io.min.js"),
            "content_type": "application/javascript",
        },
        "/socket.io-client.LICENSE": {
            "filename": str(PAGE_DIR / "socket.io-client.LICENSE"),
            "content_type": "text/plain",
        },
    }
    return socketio.ASGIApp(
        sio,
        other_asgi_app=ConsoleLink(settings.api_port),
        static_files=static_files,
        on_shutdown=fanout.stop,
    )

"""The Python client of the hwq API: `Client` (blocking) and `AsyncClient` (asyncio), on httpx.

from hwq import Client
with Client("http://127.0.0.1:8000", token) as hwq:
    print(hwq.run("sim0", "*IDN?").text)
"""

from __future__ import annotations

from hwq.client.aio import AsyncClient
from hwq.client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    HwqClientError,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RequestTimedOut,
    ServerError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from hwq.client.models import Command, Device, Event, Host, Page, Port, StreamEvent, Token
from hwq.client.sync import Client

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Command",
    "Conflict",
    "ConnectionFailed",
    "Device",
    "Event",
    "Forbidden",
    "Host",
    "HwqClientError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Port",
    "QueueFull",
    "RequestTimedOut",
    "ServerError",
    "StreamEvent",
    "Token",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
]

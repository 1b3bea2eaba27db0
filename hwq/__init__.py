"""The composition root: the `hwq` command, `hwq up` and the processes it starts, and the
Python client (`from hwq import Client, AsyncClient`).

It may import every other package of hwq; none of them imports it. Importing `hwq` itself
stays light: the client is loaded when first named, and never pulls in Celery, Flask or
SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwq.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so `hwq device-worker` and friends never import httpx.
    if name in __all__:
        import hwq.client

        return getattr(hwq.client, name)
    raise AttributeError(f"module 'hwq' has no attribute {name!r}")

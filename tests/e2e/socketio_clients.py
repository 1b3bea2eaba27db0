"""A python-socketio client that handles the gateway's messages in the order they arrive.

python-socketio's threaded client hands each Engine.IO message to a thread of its own
(engineio.Client._trigger_event with run_async=True). A binary event is two messages, the
packet and then its attachment; when the machine is busy the attachment's thread can run
first and is then parsed as a packet ("invalid literal for int() … b'O'"), losing the event.
Browsers, and python-socketio's asyncio client, handle messages in order. The tests' clients
do the same by handling each message on the thread that read it, which suits them: their
handlers only record what arrived. Reaches into a private method of the pinned
python-engineio (constraints.txt); tests/unit/test_socketio_client_hook.py fails if it moves.
"""

from __future__ import annotations

from typing import Any

import engineio
import socketio


class InOrderEngineIoClient(engineio.Client):  # type: ignore[misc]
    """Runs the message handler inline, so a binary packet and its attachment stay in order."""

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class InOrderClient(socketio.Client):  # type: ignore[misc]
    """A socketio.Client built on InOrderEngineIoClient."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return InOrderEngineIoClient


def client(**options: Any) -> socketio.Client:
    """A threaded Socket.IO client that handles messages in arrival order."""
    return InOrderClient(**options)

"""A python-socketio client that handles what it receives in the order it came (it overrides
private methods of the pinned python-engineio; tests/unit/test_socketio_client_hook.py checks).

python-socketio's threaded client hands every Engine.IO message to a new thread, so two
events close together may be handled out of order, and under load a binary event's
attachment may be taken before its header (the client then fails to decode it). The
observers of the tests and benchmarks compare order, so theirs handle each message on the
thread that read it; nothing they do in a handler blocks.
"""

from __future__ import annotations

from typing import Any

import engineio
import socketio


class _InOrderEngineIO(engineio.Client):  # type: ignore[misc]
    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)


class OrderedClient(socketio.Client):  # type: ignore[misc]
    """socketio.Client, its messages handled one after the other in arrival order."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIO

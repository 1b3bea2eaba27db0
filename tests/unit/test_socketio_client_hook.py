"""The tests' and benchmarks' in-order Socket.IO client (bench/ordered_socketio.py) overrides
private methods of python-socketio and python-engineio; this fails if a new version moves
them, instead of the gateway tests turning flaky again."""

from __future__ import annotations

import inspect

import engineio
import socketio

from bench.ordered_socketio import OrderedClient


def test_the_overridden_methods_exist_with_the_shape_relied_on() -> None:
    trigger = inspect.signature(engineio.Client._trigger_event)
    assert list(trigger.parameters) == ["self", "event", "args", "kwargs"]
    # Messages are the one event handed to a thread of its own; the override makes them inline.
    assert "'message', pkt.data, run_async=True" in inspect.getsource(engineio.Client)
    assert "_engineio_client_class" in vars(socketio.Client)


def test_the_client_uses_the_in_order_engine() -> None:
    sio = OrderedClient(reconnection=False)
    assert type(sio.eio).__name__ == "_InOrderEngineIO"
    handled: list[bytes] = []
    sio.eio.handlers["message"] = handled.append
    sio.eio._trigger_event("message", b"x", run_async=True)
    assert handled == [b"x"]  # handled inline, on this thread

"""Observers of both kinds on one device while it runs 100 commands: SSE clients of the API and
Socket.IO clients of `hwq gateway`, each over its own connection from outside the processes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import socketio
from test_gateway import Gateway

from bench.local_stack import Stack
from bench.ordered_socketio import OrderedClient

from stream_observer import Event, Observer, command_state_seen

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SSE_OBSERVERS = 3
SOCKET_IO_OBSERVERS = 2
COMMANDS = 100
WAIT_S = 60


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[Gateway]:
    running = Gateway(stack)
    running.start()
    yield running
    stack.stop("gateway")
    running.redis.close()


class RxChannel:
    """The chunks one Socket.IO client received on a device's rx channel."""

    def __init__(self, client: socketio.Client, device: str) -> None:
        self.chunks: list[bytes] = []
        self.changed = threading.Condition()
        client.on(device, self._take)

    def _take(self, data: bytes) -> None:
        with self.changed:
            self.chunks.append(bytes(data))
            self.changed.notify_all()

    def wait_for(self, wanted: bytes, timeout: float = WAIT_S) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: wanted in b"".join(self.chunks), timeout)


def connected(gateway: Gateway, token: str) -> OrderedClient:
    """A Socket.IO client of the gateway that handles its events in the order they came."""
    client = OrderedClient(reconnection=False)
    client.connect(gateway.url, auth={"token": token}, transports=["websocket"], wait_timeout=20)
    return client


def rx_chunks(events: list[Event]) -> list[bytes]:
    return [e.chunk for e in events if e.kind == "rx"]


def after_marker(chunks: list[bytes], marker: bytes) -> bytes:
    """The bytes after the last occurrence of `marker`."""
    joined = b"".join(chunks)
    assert marker in joined, joined[-200:]
    return joined[joined.rindex(marker) + len(marker) :]


def test_sse_and_socket_io_observers_see_the_same_bytes_in_order(
    stack: Stack, gateway: Gateway, device_name: str
) -> None:
    stack.add_sim_device(device_name)
    viewer = gateway.token("viewer", "mixed-watchers")
    sse = [Observer(stack, device_name, viewer) for _ in range(SSE_OBSERVERS)]
    clients = [connected(gateway, viewer) for _ in range(SOCKET_IO_OBSERVERS)]
    try:
        channels = [RxChannel(client, device_name) for client in clients]
        assert [o.status for o in sse] == [200] * SSE_OBSERVERS
        # A Socket.IO client joins its devices' rooms within the gateway's watch refresh; from
        # the first chunk every one of them receives, they all watch.
        marker = b""
        for attempt in range(30):
            marker = f"ready{attempt}\n".encode()
            stack.wait(stack.submit(device_name, f"ECHO ready{attempt}"), WAIT_S)
            if all(channel.wait_for(marker, 2) for channel in channels):
                break
        else:
            raise AssertionError("the Socket.IO clients never received the device's output")

        ids = [stack.submit(device_name, f"ECHO {n}") for n in range(COMMANDS)]
        for n, command_id in enumerate(ids):
            command = stack.wait(command_id, WAIT_S)
            assert command["state"] == "done" and command["response"] == {"text": str(n)}
        for observer in sse:
            observer.wait_until(lambda e: command_state_seen(e, ids[-1], "done"), "the last one")
        expected = b"".join(f"{n}\n".encode() for n in range(COMMANDS))
        for channel in channels:
            assert channel.wait_for(f"{COMMANDS - 1}\n".encode()), "the last reply never came"

        # The SSE observers: the same entries (rx, tx, states), same ids, same order.
        seen = [[(e.id, e.kind, e.data["data"]) for e in o.events] for o in sse]
        assert all(events == seen[0] for events in seen), "SSE observers saw different streams"
        # Every observer, of either kind: the same rx bytes in the same order.
        sse_rx = after_marker(rx_chunks(sse[0].events), marker)
        assert sse_rx == expected
        for channel in channels:
            assert after_marker(channel.chunks, marker) == sse_rx
        # The commands ran one at a time, in submission order.
        states = [(e.data["id"], e.data["state"]) for e in sse[0].events
                  if e.kind == "command" and e.data["id"] in ids]  # fmt: skip
        assert states == [(i, s) for i in ids for s in ("dispatched", "done")]
    finally:
        for observer in sse:
            observer.close()
        for client in clients:
            client.disconnect()

"""A transport other than a serial port plugs into the exchange and the device runtime as it is:
here a device held in memory, behind the same small `Transport` interface."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery

from tasks.device_options import DeviceProfile
from tasks.errors import DeviceError, ReplyTimeout
from tasks.lifecycle import State
from tasks.live_store import LiveStore
from worker_host.codecs import FRAME_DELIMITER, decode_request, encode_reply
from worker_host.device_runtime import DeviceRuntime
from worker_host.exchange import DeviceExchange
from worker_host.transport import Transport

from command_factory import command_values


class MemoryTransport:
    """A device in memory: each write is answered by `answer`, read back like a port's bytes."""

    def __init__(self, answer: Callable[[bytes], bytes], url: str = "memory://dev") -> None:
        self.url = url
        self.answer = answer
        self.written: list[bytes] = []
        self.opened = 0
        self._open = False
        self._inbox = bytearray()
        self._arrived = threading.Condition()

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        if not self._open:
            self._open, self.opened = True, self.opened + 1

    def close(self) -> None:
        self._open = False

    def send(self, data: bytes) -> None:
        """The device sends bytes of its own accord."""
        with self._arrived:
            self._inbox += data
            self._arrived.notify_all()

    def write(self, data: bytes) -> None:
        if not self._open:
            raise DeviceError(f"{self.url} is closed")
        self.written.append(data)
        self.send(self.answer(data))

    def read_some(self, timeout: float) -> bytes:
        with self._arrived:
            self._arrived.wait_for(lambda: bool(self._inbox), timeout=max(0.0, timeout))
            return self.drain()

    def drain(self) -> bytes:
        data, self._inbox = bytes(self._inbox), bytearray()
        return data


def scpi(request: bytes) -> bytes:
    """A line device: *IDN? names it, SILENT answers nothing, anything else is echoed."""
    line = request.rstrip(b"\n")
    if line == b"*IDN?":
        return b"HWQ,MEMORY\n"
    return b"" if line == b"SILENT" else line + b"\n"


def frames(request: bytes) -> bytes:
    """A frame device: replies with the request's seq and its args doubled."""
    frame = decode_request(request.rstrip(FRAME_DELIMITER))
    return encode_reply(frame.seq, 0, [2 * a for a in frame.args])


def test_the_memory_device_is_a_transport() -> None:
    # Checked by mypy where the runtime builds one; here, that it offers every member.
    transport: Transport = MemoryTransport(scpi)
    for member in ("url", "is_open", "open", "close", "write", "read_some", "drain"):
        assert hasattr(transport, member), member


def test_a_line_command_on_another_transport() -> None:
    noise: list[bytes] = []
    transport = MemoryTransport(scpi)
    exchange = DeviceExchange(transport, noise.append, DeviceProfile(codec="line", settle_s=0))
    exchange.check_ready()
    assert exchange.run("line", "*IDN?", 1.0) == {"text": "HWQ,MEMORY"}
    assert transport.written == [b"*IDN?\n"] and transport.opened == 1
    # Bytes the device sent unasked are noise, never the next command's answer.
    transport.send(b"boot banner\n")
    assert exchange.run("line", "ECHO hi", 1.0) == {"text": "ECHO hi"}
    assert noise == [b"boot banner\n"]


def test_a_frame_command_on_another_transport() -> None:
    transport = MemoryTransport(frames)
    exchange = DeviceExchange(transport, lambda _: None, DeviceProfile(codec="frame", settle_s=0))
    exchange.check_ready()
    reply = exchange.run("frame", {"command_id": 7, "args": [1, -2, 3]}, 1.0)
    assert reply == {"status": 0, "values": [2, -4, 6]}


def test_a_late_reply_on_another_transport_goes_to_its_command() -> None:
    late: list[tuple[str, dict[str, object]]] = []
    transport = MemoryTransport(scpi)
    profile = DeviceProfile(codec="line", idle_s=0.05, settle_s=2.0)
    exchange = DeviceExchange(
        transport, lambda _: None, profile, on_late_reply=lambda c, r: late.append((c, r))
    )
    exchange.check_ready()
    exchange.settle()
    try:
        exchange.run("line", "SILENT", 0.1, command_id="c-1")
    except ReplyTimeout as e:
        assert "memory://dev" in str(e)
    else:
        raise AssertionError("a silent device must time out")
    transport.send(b"finally\n")
    assert exchange.run("line", "*IDN?", 1.0, command_id="c-2") == {"text": "HWQ,MEMORY"}
    assert late == [("c-1", {"text": "finally"})]


def test_the_device_runtime_runs_a_command_on_another_transport(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    live = LiveStore(redis_client, key_prefix, lease_grace_s=10.0)
    live.put_device_config("mem0", {"name": "mem0", "transport": "memory", "address": "mem0"})
    transport = MemoryTransport(scpi, url="memory://mem0")
    built_for: list[dict[str, Any]] = []

    def transport_for(config: dict[str, Any]) -> Transport:
        built_for.append(config)
        return transport

    runtime = DeviceRuntime(
        live, Celery("transport-test"), "mem0", "mem0@host", transport_for=transport_for
    )
    try:
        values = command_values("mem0", payload="*IDN?", timeout_s=2.0)
        assert live.create(values, queue_cap=10).moved
        outcome = runtime.execute(str(values["id"]))
    finally:
        runtime.close()
    assert outcome is not None and outcome.state == State.DONE, outcome
    assert outcome.response == {"text": "HWQ,MEMORY"}
    assert transport.written == [b"*IDN?\n"] and not transport.is_open
    assert [config["address"] for config in built_for] == ["mem0"]
    stored = live.get(str(values["id"]))
    assert stored is not None and stored["response"] == {"text": "HWQ,MEMORY"}

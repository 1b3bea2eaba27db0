"""The port reader and the device stream it feeds: a simulated device on a real pseudo-terminal,
a real Redis stream."""

from __future__ import annotations

import base64
import json
import os
import threading
import time

import pytest
import redis

from tasks.device_stream import (
    StreamAppender,
    StreamEntry,
    command_entry,
    presence_entry,
    stream_event,
    stream_key,
)
from tasks.errors import DeviceError
from worker_host.port_reader import PortReader
from worker_host.simulator import running_device
from worker_host.transport import SerialTransport

# Long enough for a reply from a pty on a busy machine.
REPLY_S = 5.0


class Collected:
    """What a reader handed on: the chunks it read and the presences it reported."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.presence: list[str] = []
        self.changed = threading.Condition()

    def chunk(self, data: bytes) -> None:
        with self.changed:
            self.rx += data
            self.changed.notify_all()

    def wait_for(self, data: bytes) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: data in self.rx, REPLY_S), bytes(self.rx)


def test_idle_bytes_are_streamed_but_never_read_as_the_next_reply() -> None:
    collected = Collected()
    with running_device("scpi", "idle") as device:
        assert device.path is not None and device._master is not None
        transport = SerialTransport(device.path)
        reader = PortReader(transport, collected.chunk, collected.presence.append)
        try:
            reader.open()
            reader.discard_idle()
            # The device speaks unasked while the port is idle.
            os.write(device._master, b"# unasked\n")
            collected.wait_for(b"# unasked\n")
            assert reader.drain() == b""
            reader.write(b"*IDN?\n")
            reply = b""
            deadline = time.monotonic() + REPLY_S
            while not reply.endswith(b"\n") and time.monotonic() < deadline:
                reply += reader.read_some(deadline - time.monotonic())
            assert reply.startswith(b"HWQ,SIM,idle"), reply
            assert bytes(collected.rx).endswith(reply)
            assert collected.presence == ["online"]
        finally:
            reader.stop()
        assert collected.presence == ["online", "offline"]


def test_bytes_are_kept_for_the_exchange_until_it_says_the_port_is_idle() -> None:
    collected = Collected()
    with running_device("echo", "keep") as device:
        assert device.path is not None
        reader = PortReader(SerialTransport(device.path), collected.chunk)
        try:
            reader.open()
            reader.write(b"late")
            collected.wait_for(b"late")
            # Not yet idle: the exchange may still owe these bytes to a command.
            assert reader.drain() == b"late"
        finally:
            reader.stop()


def test_a_port_that_fails_under_the_reader_fails_the_next_read_and_reopens() -> None:
    collected = Collected()
    with running_device("echo", "gone") as device:
        assert device.path is not None
        transport = SerialTransport(device.path)
        reader = PortReader(transport, collected.chunk, collected.presence.append)
        try:
            reader.open()
            assert transport._port is not None
            # The adapter vanishes: its file descriptor goes bad under the reader.
            os.close(transport._port.fd)
            with pytest.raises(DeviceError):
                reader.read_some(REPLY_S)
            assert not reader.is_open
            # The reader's thread reports the presence; on a busy machine it may come a
            # moment after the read has failed.
            deadline = time.monotonic() + REPLY_S
            while "port-missing" not in collected.presence and time.monotonic() < deadline:
                time.sleep(0.01)
            assert "port-missing" in collected.presence
        finally:
            reader.stop()


def test_entries_reach_the_stream_in_order_and_read_back_as_events(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    appender = StreamAppender(redis_client, key_prefix)
    try:
        appender.append(presence_entry("dev", "online"))
        appender.append(command_entry("dev", "c1", "dispatched"))
        appender.append(StreamEntry("dev", "tx", b"*IDN?\n", "c1"))
        for n in range(200):
            appender.append(StreamEntry("dev", "rx", bytes([n % 256])))
        appender.append(StreamEntry("dev", "rx", b"\xff\xfe"))
        assert appender.flush()
    finally:
        appender.close()
    entries = redis_client.xrange(stream_key(key_prefix, "dev"))
    events = [stream_event(fields) for _, fields in entries]
    assert [kind for kind, _ in events[:3]] == ["presence", "command", "tx"]
    assert events[0][1]["presence"] == "online"
    assert (events[1][1]["id"], events[1][1]["state"]) == ("c1", "dispatched")
    assert events[2][1]["text"] == "*IDN?\n" and events[2][1]["command_id"] == "c1"
    rx = [base64.b64decode(data["data"]) for kind, data in events if kind == "rx"]
    assert rx == [bytes([n % 256]) for n in range(200)] + [b"\xff\xfe"]
    # Bytes that are not UTF-8 come as base64 alone.
    assert "text" not in events[-1][1]
    assert json.loads(base64.b64decode(events[0][1]["data"])) == {"presence": "online"}


def test_a_held_commands_entries_go_out_together_when_it_ends(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    # A hold far longer than any pause of a busy machine between these lines.
    appender = StreamAppender(redis_client, key_prefix, hold_max_s=60.0)
    key = stream_key(key_prefix, "dev")
    try:
        with appender.holding():
            appender.append(command_entry("dev", "c1", "dispatched"))
            appender.append(StreamEntry("dev", "tx", b"*IDN?\n", "c1"))
            appender.append(StreamEntry("dev", "rx", b"HWQ\n", "c1"))
            appender.append(command_entry("dev", "c1", "done"))
            # Nothing written yet: the command's entries wait for its end, not for each other.
            assert redis_client.xlen(key) == 0
        assert appender.flush()
    finally:
        appender.close()
    kinds = [stream_event(fields)[0] for _, fields in redis_client.xrange(key)]
    assert kinds == ["command", "tx", "rx", "command"]


def test_a_long_command_shows_its_tx_before_it_ends(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    appender = StreamAppender(redis_client, key_prefix)
    key = stream_key(key_prefix, "dev")
    try:
        with appender.holding():
            appender.append(StreamEntry("dev", "tx", b"MEAS?\n", "c1"))
            # Still holding, as while a slow device takes its time to answer: a watcher sees
            # what was written long before the reply comes.
            deadline = time.monotonic() + REPLY_S
            while redis_client.xlen(key) == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert redis_client.xlen(key) == 1
            appender.append(StreamEntry("dev", "rx", b"1.5\n", "c1"))
            while redis_client.xlen(key) == 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert redis_client.xlen(key) == 2
    finally:
        appender.close()

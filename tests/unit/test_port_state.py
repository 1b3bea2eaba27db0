"""A dirty port is drained before the next command: late replies stay with their command, and a
command that does not fit the device never reaches the port. On ptys and pyserial's loop://."""

from __future__ import annotations

import base64
import os
import select
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from tasks.device_options import DeviceProfile
from tasks.errors import DeviceError, PortNotClean, ReplyTimeout
from worker_host.exchange import DeviceExchange
from worker_host.simulator import running_device
from worker_host.transport import SerialTransport

# Short, so a test that outlasts them stays quick.
IDLE_S = 0.1
SETTLE_S = 0.6


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Recorded:
    """What an exchange reported: noise chunks and late replies."""

    noise: list[bytes] = field(default_factory=list)
    late: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def exchange(self, url: str, profile: DeviceProfile) -> DeviceExchange:
        return DeviceExchange(
            SerialTransport(url),
            self.noise.append,
            profile,
            device="dev0",
            on_late_reply=lambda command, reply: self.late.append((command, reply)),
        )


@dataclass
class Peer:
    """A scripted device on a real pty: answers each line with `reply-<line>`, and can chatter."""

    path: str
    received: bytearray = field(default_factory=bytearray)
    chatter: threading.Event = field(default_factory=threading.Event)


@contextmanager
def line_peer(send_first: bytes = b"", after_s: float = 0.0) -> Iterator[Peer]:
    """A peer that sends `send_first` once, `after_s` seconds after it starts."""
    master, slave = os.openpty()
    tty.setraw(slave)
    peer = Peer(os.ttyname(slave))
    stop = threading.Event()

    def serve() -> None:
        started, pending, buffer = time.monotonic(), send_first, b""
        while not stop.is_set():
            if pending and time.monotonic() - started >= after_s:
                os.write(master, pending)
                pending = b""
            if peer.chatter.is_set():
                os.write(master, b".")
            if select.select([master], [], [], 0.02)[0]:
                data = os.read(master, 4096)
                peer.received += data
                *lines, buffer = (buffer + data).split(b"\n")
                for line in lines:
                    os.write(master, b"reply-" + line + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        stop.set()
        thread.join(1.0)
        os.close(master)
        os.close(slave)


def test_a_reply_later_than_the_old_fixed_grace_stays_with_its_timed_out_command() -> None:
    recorded = Recorded()
    with running_device("scpi") as device:
        exchange = recorded.exchange(str(device.path), DeviceProfile(settle_s=10.0))
        try:
            with pytest.raises(ReplyTimeout):
                exchange.run("line", "SLEEP 2500", 0.2, command_id="slow")
            assert exchange.is_dirty
            assert exchange.run("line", "*IDN?", 1.0, command_id="next") == {
                "text": "HWQ,SIM,sim0,0.1"
            }
            assert not exchange.is_dirty
        finally:
            exchange.transport.close()
    assert recorded.late == [("slow", {"text": "OK"})]
    assert recorded.noise == [b"OK\n"]


def test_a_port_that_keeps_sending_fails_the_next_command_without_writing_it() -> None:
    recorded = Recorded()
    # The peer chatters every 20 ms; an idle time far above that keeps a busy machine, which
    # may not schedule the peer's thread for a while, from seeing a quiet line.
    idle_s, settle_s = 0.5, 1.5
    profile = DeviceProfile(idle_s=idle_s, settle_s=settle_s)
    with line_peer() as peer:
        exchange = recorded.exchange(peer.path, profile)
        try:
            peer.chatter.set()
            started = time.monotonic()
            with pytest.raises(PortNotClean, match=r"dev0 kept sending for 1\.5 s .*not clean"):
                exchange.run("line", "HELLO", 1.0)
            assert settle_s <= time.monotonic() - started < settle_s + 2.0
            assert bytes(peer.received) == b""
            assert exchange.is_dirty
            # Once the device falls quiet the port comes clean and commands flow again.
            peer.chatter.clear()
            assert exchange.run("line", "HELLO", 1.0) == {"text": "reply-HELLO"}
        finally:
            exchange.transport.close()
    assert bytes(peer.received) == b"HELLO\n"
    assert set(b"".join(recorded.noise)) == {ord(".")}


def test_a_command_left_in_flight_by_a_previous_worker_keeps_its_late_reply() -> None:
    recorded = Recorded()
    # The device answers the old command half a second after this worker opened the port.
    with line_peer(send_first=b"OK\n", after_s=0.5) as peer:
        exchange = recorded.exchange(peer.path, DeviceProfile(idle_s=IDLE_S, settle_s=0.1))
        try:
            exchange.expect_late_reply("old", "line", None, within_s=2.0)
            assert exchange.run("line", "NEW", 3.0, command_id="new") == {"text": "reply-NEW"}
        finally:
            exchange.transport.close()
    assert recorded.late == [("old", {"text": "OK"})]
    assert recorded.noise == [b"OK\n"]


def test_an_owed_reply_that_never_comes_is_given_up_once_the_grace_has_passed_quietly() -> None:
    recorded = Recorded()
    with line_peer() as peer:
        exchange = recorded.exchange(peer.path, DeviceProfile(idle_s=IDLE_S, settle_s=SETTLE_S))
        try:
            exchange.expect_late_reply("lost", "line", None, within_s=0.0)
            started = time.monotonic()
            assert exchange.run("line", "NEW", 1.0) == {"text": "reply-NEW"}
            assert time.monotonic() - started >= SETTLE_S
        finally:
            exchange.transport.close()
    assert recorded.late == []


def test_a_freshly_opened_port_is_drained_before_the_first_command() -> None:
    recorded = Recorded()
    # A reply meant for a command of a previous worker, sent just after this one opened.
    with line_peer(send_first=b"stale\n", after_s=0.05) as peer:
        exchange = recorded.exchange(peer.path, DeviceProfile(idle_s=0.3))
        try:
            assert exchange.run("line", "NEW", 1.0) == {"text": "reply-NEW"}
        finally:
            exchange.transport.close()
    assert recorded.noise == [b"stale\n"]


def test_a_raw_payload_to_a_line_device_is_one_terminated_line() -> None:
    recorded = Recorded()
    exchange = recorded.exchange("loop://", DeviceProfile(idle_s=0.01))
    until_newline = {"until": b64(b"\n")}
    try:
        # loop:// hands back what was written: the terminator was added once, not twice.
        assert exchange.run("raw", b64(b"ECHO two"), 1.0, until_newline) == {
            "data": b64(b"ECHO two\n")
        }
        assert exchange.run("raw", b64(b"ECHO one\r\n"), 1.0, until_newline) == {
            "data": b64(b"ECHO one\r\n")
        }
        for inside in (b"ECHO one\nSLEEP 1500\n", b"a\rb"):
            with pytest.raises(DeviceError, match="not hold one inside"):
                exchange.run("raw", b64(inside), 1.0, until_newline)
        assert exchange.transport.drain() == b""
    finally:
        exchange.transport.close()
    allowed = recorded.exchange("loop://", DeviceProfile(idle_s=0.01, raw_multiline=True))
    try:
        reply = allowed.run("raw", b64(b"a\nb\n"), 1.0, {"bytes": 4})
        assert reply == {"data": b64(b"a\nb\n")}
    finally:
        allowed.transport.close()


@pytest.mark.parametrize(
    ("codec", "kind", "payload"),
    [
        ("frame", "line", "*IDN?"),
        ("line", "frame", {"command_id": 0, "args": []}),
        ("raw", "frame", {"command_id": 0, "args": []}),
    ],
)
def test_a_command_that_does_not_fit_the_codec_never_reaches_the_port(
    codec: str, kind: str, payload: object
) -> None:
    exchange = Recorded().exchange("loop://", DeviceProfile(codec=codec))
    with pytest.raises(DeviceError, match=f"codec {codec}"):
        exchange.run(kind, payload, 1.0)
    assert not exchange.transport.is_open


def test_a_raw_reply_cut_mid_line_leaves_the_port_dirty_until_the_line_ends() -> None:
    recorded = Recorded()
    exchange = recorded.exchange("loop://", DeviceProfile(idle_s=0.05))
    try:
        assert exchange.run("raw", b64(b"abcdef"), 1.0, {"bytes": 3}) == {"data": b64(b"abc")}
        assert exchange.is_dirty
        assert exchange.run("line", "next", 1.0) == {"text": "next"}
    finally:
        exchange.transport.close()
    assert b"".join(recorded.noise) == b"def\n"

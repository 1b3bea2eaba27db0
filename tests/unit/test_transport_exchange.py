"""SerialTransport on pyserial's loop://, DeviceExchange against simulated devices on ptys."""

from __future__ import annotations

import base64
import os
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tasks.device_options import DeviceProfile
from tasks.errors import DeviceError, ReplyTimeout
from worker_host.codecs import (
    FrameRequest,
    FrameSplitter,
    cobs_decode,
    cobs_encode,
    decode_request,
    encode_reply,
)
from worker_host.exchange import DeviceExchange
from worker_host.simulator import running_device
from worker_host.transport import SerialTransport


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextmanager
def loop_transport() -> Iterator[SerialTransport]:
    transport = SerialTransport("loop://")
    try:
        yield transport
    finally:
        transport.close()


# The codec each simulator speaks.
SIM_CODECS = {"scpi": "line", "echo": "raw", "frame": "frame"}


@contextmanager
def exchange_with(
    kind: str, settle_s: float = 2.0, link_path: Path | None = None
) -> Iterator[tuple[DeviceExchange, list[bytes]]]:
    """An exchange on a simulated device of this kind, and the noise it reported."""
    noise: list[bytes] = []
    profile = DeviceProfile(codec=SIM_CODECS[kind], settle_s=settle_s)
    with running_device(kind, link_path=link_path) as dev:
        transport = SerialTransport(str(link_path or dev.path))
        try:
            yield DeviceExchange(transport, noise.append, profile), noise
        finally:
            transport.close()


@contextmanager
def frame_peer(answer: Callable[[FrameRequest], bytes]) -> Iterator[str]:
    """A scripted frame device on a real pty that answers each request with answer(request)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def serve() -> None:
        splitter = FrameSplitter()
        while not stop.is_set():
            if select.select([master], [], [], 0.02)[0]:
                for frame in splitter.feed(os.read(master, 4096)):
                    os.write(master, answer(decode_request(frame)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield os.ttyname(slave)
    finally:
        stop.set()
        thread.join(1.0)
        os.close(master)
        os.close(slave)


# --- transport ----------------------------------------------------------------------------


def test_transport_opens_lazily_and_reads_what_was_written() -> None:
    with loop_transport() as transport:
        assert not transport.is_open
        transport.write(b"abc")
        assert transport.is_open
        assert transport.read_some(1.0) == b"abc"


def test_read_some_waits_for_its_timeout_then_returns_nothing() -> None:
    with loop_transport() as transport:
        for timeout in (0.05, 0.25):
            started = time.monotonic()
            assert transport.read_some(timeout) == b""
            assert timeout <= time.monotonic() - started < timeout + 0.2


def test_drain_returns_waiting_bytes_without_blocking() -> None:
    with loop_transport() as transport:
        started = time.monotonic()
        assert transport.drain() == b""
        transport.write(b"stale")
        time.sleep(0.01)
        assert transport.drain() == b"stale"
        assert time.monotonic() - started < 0.1


def test_closed_transport_reopens_on_next_use() -> None:
    with loop_transport() as transport:
        transport.open()
        transport.close()
        assert not transport.is_open
        transport.write(b"x")
        assert transport.read_some(1.0) == b"x"


def test_missing_port_names_its_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(DeviceError, match="ttyUSB9"):
        SerialTransport(missing).read_some(0.1)
    exchange = DeviceExchange(SerialTransport(missing), lambda _: None)
    with pytest.raises(DeviceError, match="ttyUSB9"):
        exchange.check_ready()
    with pytest.raises(DeviceError, match="ttyUSB9"):
        exchange.run("line", "*IDN?", 1.0)


# --- exchange on loop:// --------------------------------------------------------------------


def test_bytes_waiting_before_a_command_are_noise_not_its_reply() -> None:
    noise: list[bytes] = []
    with loop_transport() as transport:
        transport.write(b"junk\n")
        exchange = DeviceExchange(transport, noise.append)
        assert exchange.run("line", "hello", 1.0) == {"text": "hello"}
    assert noise == [b"junk\n"]


# --- exchange on simulated devices ----------------------------------------------------------


def test_line_commands_get_their_own_lines() -> None:
    with exchange_with("scpi") as (exchange, noise):
        assert exchange.run("line", "*IDN?", 1.0) == {"text": "HWQ,SIM,sim0,0.1"}
        assert exchange.run("line", "ECHO a b", 1.0) == {"text": "a b"}
        assert exchange.run("line", "NOPE", 1.0)["text"] == "ERR unknown command: NOPE"
    assert noise == []


def test_raw_reply_ends_at_until_and_the_rest_is_noise() -> None:
    with exchange_with("echo") as (exchange, noise):
        reply = exchange.run("raw", b64(b"abc;def"), 1.0, {"until": b64(b";")})
        assert reply == {"data": b64(b"abc;")}
        binary = exchange.run("raw", b64(b"\x00\xff"), 1.0, {"bytes": 2})
        assert binary == {"data": b64(b"\x00\xff")}
    assert b"".join(noise) == b"def"


def test_raw_reply_ends_at_byte_count_or_idle_gap() -> None:
    with exchange_with("echo") as (exchange, _):
        assert exchange.run("raw", b64(b"123456"), 1.0, {"bytes": 4}) == {"data": b64(b"1234")}
        started = time.monotonic()
        assert exchange.run("raw", b64(b"xyz"), 1.0, {"idle_ms": 100}) == {"data": b64(b"xyz")}
        assert 0.1 <= time.monotonic() - started < 0.5
        assert exchange.run("raw", b64(b"default"), 1.0) == {"data": b64(b"default")}


def test_frame_commands() -> None:
    with exchange_with("frame") as (exchange, noise):
        assert exchange.run("frame", {"command_id": 0, "args": []}, 1.0) == {
            "status": 0,
            "values": [],
        }
        echoed = exchange.run("frame", {"command_id": 1, "args": [-5, 2**31 - 1]}, 1.0)
        assert echoed == {"status": 0, "values": [-5, 2**31 - 1]}
        summed = exchange.run("frame", {"command_id": 2, "args": [1, 2, 3]}, 1.0)
        assert summed == {"status": 0, "values": [6]}
        assert exchange.run("frame", {"command_id": 77, "args": []}, 1.0)["status"] == 1
    assert noise == []


def test_frame_sequence_number_wraps() -> None:
    with exchange_with("frame") as (exchange, noise):
        for _ in range(260):
            assert exchange.run("frame", {"command_id": 0, "args": []}, 1.0)["status"] == 0
    assert noise == []


def test_timeout_raises_reply_timeout_naming_port_and_timeout() -> None:
    with exchange_with("scpi") as (exchange, _):
        started = time.monotonic()
        with pytest.raises(ReplyTimeout, match=r"/dev/.* 0\.2 s"):
            exchange.run("line", "SLEEP 500", 0.2)
        assert 0.2 <= time.monotonic() - started < 0.5


def test_next_command_after_a_timeout_gets_its_own_reply() -> None:
    with exchange_with("scpi") as (exchange, noise):
        with pytest.raises(ReplyTimeout):
            exchange.run("line", "SLEEP 600", 0.2)
        assert exchange.run("line", "*IDN?", 1.0) == {"text": "HWQ,SIM,sim0,0.1"}
    assert noise == [b"OK\n"]


def test_late_frame_reply_is_noise_even_without_grace() -> None:
    # With no grace the late reply lands during the next command: its seq gives it away.
    with exchange_with("frame", settle_s=0.0) as (exchange, noise):
        with pytest.raises(ReplyTimeout):
            exchange.run("frame", {"command_id": 3, "args": [300]}, 0.1)
        assert exchange.run("frame", {"command_id": 1, "args": [9]}, 1.0) == {
            "status": 0,
            "values": [9],
        }
    assert noise == [encode_reply(0, 0, [300])]


def test_settle_awaits_the_late_frame_reply_before_the_next_command() -> None:
    with exchange_with("frame") as (exchange, noise):
        with pytest.raises(ReplyTimeout):
            exchange.run("frame", {"command_id": 3, "args": [300]}, 0.1)
        exchange.settle()
        assert noise == [encode_reply(0, 0, [300])]
        assert exchange.run("frame", {"command_id": 0, "args": []}, 1.0)["status"] == 0
    assert noise == [encode_reply(0, 0, [300])]


def _with_bad_crc(wire: bytes) -> bytes:
    raw = cobs_decode(wire[:-1])
    return cobs_encode(raw[:-1] + bytes([raw[-1] ^ 0x01])) + b"\x00"


def test_corrupt_and_foreign_frames_are_noise_and_the_wait_goes_on() -> None:
    def answer(request: FrameRequest) -> bytes:
        corrupt = _with_bad_crc(encode_reply(request.seq, 0, [1]))
        foreign = encode_reply((request.seq + 1) % 256, 0, [2])
        return corrupt + foreign + encode_reply(request.seq, 0, [3])

    noise: list[bytes] = []
    with frame_peer(answer) as path:
        transport = SerialTransport(path)
        try:
            reply = DeviceExchange(transport, noise.append, DeviceProfile(codec="frame")).run(
                "frame", {"command_id": 1, "args": []}, 1.0
            )
        finally:
            transport.close()
    assert reply == {"status": 0, "values": [3]}
    assert b"".join(noise) == _with_bad_crc(encode_reply(0, 0, [1])) + encode_reply(1, 0, [2])


def test_device_that_disappears_fails_then_reopens(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "sim0"
    noise: list[bytes] = []
    exchange = DeviceExchange(SerialTransport(str(link)), noise.append)
    try:
        with running_device("scpi", link_path=link):
            assert str(exchange.run("line", "*IDN?", 1.0)["text"]).startswith("HWQ,SIM")
        with pytest.raises(DeviceError, match="sim0"):
            exchange.run("line", "*IDN?", 1.0)
        assert not exchange.transport.is_open
        with running_device("scpi", name="sim0b", link_path=link):
            exchange.check_ready()
            assert exchange.run("line", "*IDN?", 1.0) == {"text": "HWQ,SIM,sim0b,0.1"}
    finally:
        exchange.transport.close()


@pytest.mark.parametrize(
    ("kind", "payload", "read"),
    [
        ("python", "print(1)", None),
        ("line", "two\nlines", None),
        ("line", 42, None),
        ("raw", "not base64!", None),
        ("raw", b64(b"x"), {"bytes": "four"}),
        ("raw", b64(b"x"), {"bytes": 0}),
        ("frame", {"command_id": 256, "args": []}, None),
        ("frame", {"command_id": 1, "args": [2**31]}, None),
        ("frame", [1, 2], None),
    ],
)
def test_bad_commands_fail_before_reaching_the_port(
    kind: str, payload: object, read: dict[str, object] | None
) -> None:
    with loop_transport() as transport:
        with pytest.raises(DeviceError):
            DeviceExchange(transport, lambda _: None).run(kind, payload, 1.0, read)
        assert not transport.is_open

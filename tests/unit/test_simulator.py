"""Simulated devices on real pseudo-terminals, talked to through plain file descriptors."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from worker_host.codecs import FrameSplitter, decode_reply, encode_request
from worker_host.simulator import SimulatedDevice, running_device

REPO_ROOT = Path(__file__).resolve().parents[2]
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00 (.*)$")


@contextmanager
def opened(path: str | None) -> Iterator[int]:
    """The device's tty as the host sees it, with the settings the simulator gave it."""
    assert path is not None, "start() the device first"
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        yield fd
    finally:
        os.close(fd)


def read_until(fd: int, done: bytes, timeout: float = 2.0) -> bytes:
    """Read from fd until the data ends with done, or fail after timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(done):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {done!r} after {data!r}"
        if select.select([fd], [], [], remaining)[0]:
            data += os.read(fd, 4096)
    return data


def log_texts(log: Path) -> list[str]:
    """The received texts of a simulator log, after checking each line's timestamp."""
    texts = []
    for line in log.read_text().splitlines():
        match = ISO_LINE.match(line)
        assert match, line
        texts.append(match.group(1))
    return texts


def test_scpi_answers_each_command(tmp_path: Path) -> None:
    with running_device("scpi", name="bench1") as dev, opened(dev.path) as fd:
        os.write(fd, b"*IDN?\nECHO hello  world\r\nMEAS:VOLT?\nFOO 1\n")
        lines = read_until(fd, b"FOO 1\n").decode().split("\n")
    assert lines[0] == "HWQ,SIM,bench1,0.1"
    assert lines[1] == "hello  world"
    assert 1.0 < float(lines[2]) < 1.4
    assert lines[3] == "ERR unknown command: FOO 1"


def test_scpi_sleep_blocks_the_device_in_order() -> None:
    with running_device("scpi") as dev, opened(dev.path) as fd:
        started = time.monotonic()
        os.write(fd, b"SLEEP 300\n*IDN?\n")
        assert select.select([fd], [], [], 2.0)[0]
        first_byte_after = time.monotonic() - started
        replies = read_until(fd, b",0.1\n")
    assert 0.29 <= first_byte_after < 1.0
    assert replies == b"OK\nHWQ,SIM,sim0,0.1\n"


def test_log_records_what_the_device_received_and_not_its_echo(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "sim0.log"
    with running_device("scpi", log_path=log) as dev, opened(dev.path) as fd:
        os.write(fd, b"*IDN?\n")
        read_until(fd, b"\n")
        os.write(fd, b"ECHO x\n")
        read_until(fd, b"x\n")
    assert log_texts(log) == ["*IDN?", "ECHO x"]


def test_echo_returns_every_byte_unchanged(tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    payload = bytes(range(256))
    with running_device("echo", log_path=log) as dev, opened(dev.path) as fd:
        os.write(fd, payload)
        assert read_until(fd, payload[-8:]) == payload
    assert "".join(log_texts(log)).startswith("b'\\x00\\x01")


def _frame_call(fd: int, wire: bytes) -> list[bytes]:
    os.write(fd, wire)
    splitter = FrameSplitter()
    return splitter.feed(read_until(fd, b"\x00"))


def test_frame_device_commands(tmp_path: Path) -> None:
    log = tmp_path / "frame.log"
    with running_device("frame", log_path=log) as dev, opened(dev.path) as fd:
        replies = {
            name: decode_reply(_frame_call(fd, encode_request(seq, cid, args))[0])
            for seq, (name, cid, args) in enumerate(
                [
                    ("ping", 0, []),
                    ("echo", 1, [5, -6, 2**31 - 1]),
                    ("sum", 2, [1, 2, 3]),
                    ("sleep", 3, [20]),
                    ("unknown", 9, []),
                ]
            )
        }
    assert [(r.seq, r.status, r.values) for r in replies.values()] == [
        (0, 0, []),
        (1, 0, [5, -6, 2**31 - 1]),
        (2, 0, [6]),
        (3, 0, [20]),
        (4, 1, []),
    ]
    assert log_texts(log)[0] == "FrameRequest(seq=0, command_id=0, args=[])"


def test_frame_sum_wraps_like_int32() -> None:
    with running_device("frame") as dev, opened(dev.path) as fd:
        [frame] = _frame_call(fd, encode_request(0, 2, [2**31 - 1, 1]))
    assert decode_reply(frame).values == [-(2**31)]


def test_frame_device_ignores_bad_frames() -> None:
    corrupt = bytearray(encode_request(1, 0, []))
    corrupt[2] ^= 0x40
    with running_device("frame") as dev, opened(dev.path) as fd:
        # A reply to the ping proves the corrupt frame before it got none.
        frames = _frame_call(fd, bytes(corrupt) + encode_request(2, 0, []))
    assert [decode_reply(f).seq for f in frames] == [2]


def test_link_follows_the_newest_device(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "sim0"
    first = SimulatedDevice(link_path=link)
    second = SimulatedDevice(link_path=link)
    try:
        first_path = first.start()
        assert os.readlink(link) == first_path
        second_path = second.start()
        assert os.readlink(link) == second_path != first_path
        assert not list(link.parent.glob(".*"))
    finally:
        first.stop()
        second.stop()


def test_stop_interrupts_a_long_sleep() -> None:
    dev = SimulatedDevice()
    path = dev.start()
    thread = dev.serve_in_thread()
    with opened(path) as fd:
        os.write(fd, b"SLEEP 60000\n")
        time.sleep(0.1)
        started = time.monotonic()
        dev.stop()
        thread.join(1.0)
    assert not thread.is_alive()
    assert time.monotonic() - started < 0.5


def test_stop_before_serving_returns_at_once() -> None:
    dev = SimulatedDevice("echo")
    dev.start()
    dev.stop()
    thread = threading.Thread(target=dev.serve_forever)
    started = time.monotonic()
    thread.start()
    thread.join(1.0)
    assert not thread.is_alive()
    assert time.monotonic() - started < 0.5


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        SimulatedDevice("modem")


def test_run_simulator_serves_until_sigterm_then_removes_its_link(tmp_path: Path) -> None:
    link = tmp_path / "sim7"
    program = (
        "import sys; from pathlib import Path; from worker_host.simulator import run_simulator; "
        "run_simulator('scpi', 'sim7', None, Path(sys.argv[1]), lambda p: print(p, flush=True))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen(
        [sys.executable, "-c", program, str(link)], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            path = proc.stdout.readline().strip()
            assert os.readlink(link) == path
            with opened(str(link)) as fd:
                os.write(fd, b"*IDN?\n")
                assert read_until(fd, b"\n") == b"HWQ,SIM,sim7,0.1\n"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=2) == 0
        finally:
            proc.kill()
    assert not link.is_symlink()

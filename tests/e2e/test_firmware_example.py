"""The example firmware against hwq, each on a pseudo-terminal: the MicroPython program run
under CPython, and the Arduino sketch built for this computer with a small stand-in for the
Arduino core (arduino_host/). Each frame implementation and hwq's codec must agree both ways,
and a real device worker gets the firmware's answers.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import unavailable

from bench.local_stack import Stack
from worker_host.codecs import INT32_MAX, INT32_MIN, FrameSplitter, decode_reply, encode_request

REPO_ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON_PROGRAM = REPO_ROOT / "examples" / "firmware" / "micropython" / "main.py"
ARDUINO_SKETCH = REPO_ROOT / "examples" / "firmware" / "arduino" / "hwq_device" / "hwq_device.ino"
ARDUINO_CORE = Path(__file__).resolve().parent / "arduino_host"


@pytest.fixture(scope="module")
def sketch_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Arduino sketch built for this computer."""
    compiler = shutil.which("g++")
    if compiler is None:
        unavailable("no g++ to build the Arduino sketch for this computer")
    program = tmp_path_factory.mktemp("sketch") / "hwq_device"
    subprocess.run(
        [compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-O1", f"-I{ARDUINO_CORE}",
         "-x", "c++", str(ARDUINO_SKETCH), "-x", "none", str(ARDUINO_CORE / "main.cpp"),
         "-o", str(program)],
        check=True, timeout=120,
    )  # fmt: skip
    return program


@dataclass
class Board:
    """The firmware process on the master side of a pty; `path` is the port a host opens."""

    process: subprocess.Popen[bytes]
    path: str
    port: int  # our own descriptor of the port side, opened raw

    def exchange(self, data: bytes, until: bytes, timeout: float = 10) -> bytes:
        os.write(self.port, data)
        received = b""
        deadline = time.monotonic() + timeout
        while until not in received:
            assert time.monotonic() < deadline, f"no {until!r} in {received!r}"
            try:
                received += os.read(self.port, 4096)
            except BlockingIOError:
                time.sleep(0.01)
        return received


@pytest.fixture(params=["micropython", "arduino"])
def board(request: pytest.FixtureRequest) -> Iterator[Board]:
    if request.param == "micropython":
        command = [sys.executable, str(MICROPYTHON_PROGRAM)]
    else:
        command = [str(request.getfixturevalue("sketch_program"))]
    master, slave = pty.openpty()
    # No echo, no CR/LF rewriting: the bytes of a frame pass as they are.
    tty.setraw(slave)
    os.set_blocking(slave, False)
    process = subprocess.Popen(command, stdin=master, stdout=master, stderr=subprocess.PIPE)
    os.close(master)
    try:
        yield Board(process, os.ttyname(slave), slave)
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
        os.close(slave)


def test_hwq_frames_get_the_firmwares_answers_over_a_pty(board: Board) -> None:
    for seq, command_id, args, status, values in (
        (7, 0, [], 0, []),
        (8, 1, [1, -2, INT32_MIN, INT32_MAX], 0, [1, -2, INT32_MIN, INT32_MAX]),
        (255, 2, [40, 2], 0, [42]),
        (0, 2, [INT32_MAX, 1], 0, [INT32_MIN]),
        # Byte values that are delimiters or line ends elsewhere, inside a frame.
        (10, 1, [0x0A0A0A0A, 0, 0x0D000A03], 0, [0x0A0A0A0A, 0, 0x0D000A03]),
        (1, 200, [], 1, []),
    ):
        received = board.exchange(encode_request(seq, command_id, args), b"\x00")
        (frame,) = FrameSplitter().feed(received)
        reply = decode_reply(frame)
        assert (reply.seq, reply.status, reply.values) == (seq, status, values)


def test_a_corrupt_frame_gets_no_answer_and_the_next_one_does(board: Board) -> None:
    corrupt = bytearray(encode_request(3, 1, [5]))
    corrupt[4] ^= 0x40
    os.write(board.port, bytes(corrupt))
    received = board.exchange(encode_request(4, 1, [6]), b"\x00")
    reply = decode_reply(FrameSplitter().feed(received)[0])
    assert (reply.seq, reply.values) == (4, [6])


def test_the_firmware_speaks_the_scpi_simulators_lines(board: Board) -> None:
    assert board.exchange(b"*IDN?\n", b"\n").startswith(b"HWQ,FW,")
    assert board.exchange(b"ECHO hello there\n", b"\n").rstrip(b"\r\n") == b"hello there"
    assert float(board.exchange(b"MEAS:VOLT?\n", b"\n"))
    assert board.exchange(b"NOPE\n", b"\n").startswith(b"ERR")
    # Lines and frames on one port, one after the other.
    reply = decode_reply(board.exchange(encode_request(9, 0, []), b"\x00")[:-1])
    assert reply.seq == 9
    assert board.exchange(b"ECHO again\r\n", b"\n").rstrip(b"\r\n") == b"again"


def test_a_device_worker_gets_the_firmwares_answers(
    stack: Stack, board: Board, device_name: str
) -> None:
    reply = stack.request(
        "POST", "/devices", body={"name": device_name, "address": board.path, "codec": "frame"}
    )
    assert reply.status == 201, reply.body
    stack.start_worker(device_name)
    try:
        for command_id, args, response in (
            (2, [40, 2], {"status": 0, "values": [42]}),
            (1, [INT32_MIN, 0, INT32_MAX], {"status": 0, "values": [INT32_MIN, 0, INT32_MAX]}),
            (77, [], {"status": 1, "values": []}),
        ):
            submitted = stack.request(
                "POST",
                f"/devices/{device_name}/commands",
                body={"kind": "frame", "payload": {"command_id": command_id, "args": args}},
            )
            assert submitted.status == 202, submitted.body
            command = stack.wait(submitted.body["id"])
            assert command["state"] == "done", command
            assert command["response"] == response
    finally:
        stack.stop(f"device-{device_name}")

"""The standard command frame of DESIGN §5: COBS, CRC, request and reply layout."""

from __future__ import annotations

import random
import struct

import pytest

from tasks.errors import DeviceError
from worker_host.codecs import (
    INT32_MAX,
    INT32_MIN,
    FrameReply,
    FrameRequest,
    FrameSplitter,
    cobs_decode,
    cobs_encode,
    crc16_ccitt_false,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


_RUN_254 = bytes(range(1, 255))

# The examples of the COBS paper as given on Wikipedia, long runs included.
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (_RUN_254, b"\xff" + _RUN_254),
    (b"\x00" + _RUN_254, b"\x01\xff" + _RUN_254),
    (bytes(range(1, 256)), b"\xff" + _RUN_254 + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize(("plain", "encoded"), COBS_VECTORS)
def test_cobs_known_vectors(plain: bytes, encoded: bytes) -> None:
    assert cobs_encode(plain) == encoded
    assert cobs_decode(encoded) == plain


def test_cobs_round_trip_has_no_zero_bytes() -> None:
    rng = random.Random(5)
    for size in (1, 253, 254, 255, 508, 600):
        for zero_share in (0.0, 0.1, 0.9):
            plain = bytes(
                0 if rng.random() < zero_share else rng.randint(1, 255) for _ in range(size)
            )
            encoded = cobs_encode(plain)
            assert 0 not in encoded
            assert cobs_decode(encoded) == plain


@pytest.mark.parametrize("bad", [b"\x00", b"\x05\x11", b"\x03\x11\x00", b"\x02\x11\x00\x01"])
def test_cobs_decode_rejects_invalid_input(bad: bytes) -> None:
    with pytest.raises(DeviceError, match="COBS"):
        cobs_decode(bad)


def test_request_wire_layout() -> None:
    wire = encode_request(7, 2, [1, -1])
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    raw = cobs_decode(wire[:-1])
    body, crc = raw[:-2], raw[-2:]
    assert body == bytes([0x01, 7, 2, 2]) + struct.pack("<ii", 1, -1)
    assert crc == crc16_ccitt_false(body).to_bytes(2, "little")


def test_request_round_trip_at_the_limits() -> None:
    args = [INT32_MIN, INT32_MAX, 0] + list(range(61))
    wire = encode_request(255, 255, args)
    assert decode_request(wire[:-1]) == FrameRequest(seq=255, command_id=255, args=args)


def test_reply_round_trip() -> None:
    wire = encode_reply(3, 0, [42, -7])
    assert decode_reply(wire[:-1]) == FrameReply(seq=3, status=0, values=[42, -7])
    assert decode_reply(encode_reply(0, 1, [])[:-1]) == FrameReply(seq=0, status=1, values=[])


@pytest.mark.parametrize(
    ("seq", "command_id", "args"),
    [
        (256, 0, []),
        (-1, 0, []),
        (0, 256, []),
        (0, True, []),
        (0, 0, [INT32_MAX + 1]),
        (0, 0, [INT32_MIN - 1]),
        (0, 0, [1.5]),
        (0, 0, [0] * 65),
    ],
)
def test_request_validation(seq: int, command_id: int, args: list[int]) -> None:
    with pytest.raises(ValueError):
        encode_request(seq, command_id, args)


def _frame_from_body(body: bytes, crc: int | None = None) -> bytes:
    """A frame (no delimiter) around an arbitrary body, with its real CRC unless given."""
    crc = crc16_ccitt_false(body) if crc is None else crc
    return cobs_encode(body + crc.to_bytes(2, "little"))


def test_decode_rejects_bad_crc() -> None:
    body = bytes([1, 3, 0, 1]) + struct.pack("<i", 5)
    with pytest.raises(DeviceError, match="CRC"):
        decode_reply(_frame_from_body(body, crc16_ccitt_false(body) ^ 0x0100))


def test_decode_rejects_unknown_version() -> None:
    with pytest.raises(DeviceError, match="version"):
        decode_reply(_frame_from_body(bytes([2, 3, 0, 0])))


def test_decode_rejects_length_that_disagrees_with_count() -> None:
    with pytest.raises(DeviceError, match="length"):
        decode_reply(_frame_from_body(bytes([1, 3, 0, 2]) + struct.pack("<i", 5)))
    with pytest.raises(DeviceError, match="too short"):
        decode_reply(cobs_encode(b"\x01\x02"))
    with pytest.raises(DeviceError, match="items"):
        decode_reply(_frame_from_body(bytes([1, 3, 0, 65]) + bytes(4 * 65)))


def test_splitter_yields_frames_across_chunks() -> None:
    one, two = encode_reply(1, 0, [1]), encode_reply(2, 0, [0, 0])
    stream = b"\x00\x00" + one + two
    splitter = FrameSplitter()
    frames = splitter.feed(stream[:5]) + splitter.feed(stream[5:-3])
    assert splitter.pending == two[:-3]
    frames += splitter.feed(stream[-3:])
    assert [decode_reply(f).seq for f in frames] == [1, 2]
    assert splitter.pending == b""

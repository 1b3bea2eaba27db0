"""Properties of the standard frame (DESIGN §5) over generated input: what is encoded decodes
to itself, and whatever bytes arrive, the decoder answers with a frame or the frame error.

Under CI=true each property runs 10,000 examples (profile `frame-ci`); locally 500.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.errors import DeviceError
from worker_host.codecs import (
    INT32_MAX,
    INT32_MIN,
    MAX_FRAME_ITEMS,
    FrameSplitter,
    cobs_decode,
    cobs_encode,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

settings.register_profile(
    "frame-ci",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("frame-dev", max_examples=500, deadline=None)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FRAME_SETTINGS = settings(settings.get_profile("frame-ci" if IN_CI else "frame-dev"))

u8 = st.integers(min_value=0, max_value=255)
int32s = st.lists(st.integers(min_value=INT32_MIN, max_value=INT32_MAX), max_size=MAX_FRAME_ITEMS)


@FRAME_SETTINGS
@given(seq=u8, command_id=u8, args=int32s)
def test_a_request_decodes_to_what_was_encoded(seq: int, command_id: int, args: list[int]) -> None:
    wire = encode_request(seq, command_id, args)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    request = decode_request(wire[:-1])
    assert (request.seq, request.command_id, request.args) == (seq, command_id, args)


@FRAME_SETTINGS
@given(seq=u8, status=u8, values=int32s)
def test_a_reply_decodes_to_what_was_encoded(seq: int, status: int, values: list[int]) -> None:
    wire = encode_reply(seq, status, values)
    assert b"\x00" not in wire[:-1]
    reply = decode_reply(wire[:-1])
    assert (reply.seq, reply.status, reply.values) == (seq, status, values)


@FRAME_SETTINGS
@given(st.binary(max_size=600))
def test_cobs_round_trips_any_bytes_and_leaves_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert b"\x00" not in encoded
    assert cobs_decode(encoded) == data


@FRAME_SETTINGS
@given(st.binary(max_size=600))
def test_any_bytes_decode_to_a_frame_or_the_frame_error(data: bytes) -> None:
    for decode in (decode_request, decode_reply):
        with contextlib.suppress(DeviceError):
            decode(data)


@FRAME_SETTINGS
@given(st.binary(max_size=300))
def test_any_cobs_body_decodes_to_a_frame_or_the_frame_error(body: bytes) -> None:
    # Past the COBS layer: lengths, versions and CRCs of every kind reach the frame checks.
    for decode in (decode_request, decode_reply):
        with contextlib.suppress(DeviceError):
            decode(cobs_encode(body))


@FRAME_SETTINGS
@given(seq=u8, status=u8, values=int32s, data=st.data())
def test_a_truncated_frame_is_the_frame_error(
    seq: int, status: int, values: list[int], data: st.DataObject
) -> None:
    frame = encode_reply(seq, status, values)[:-1]
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1), label="cut")
    with pytest.raises(DeviceError):
        decode_reply(frame[:cut])


@FRAME_SETTINGS
@given(seq=u8, command_id=u8, args=int32s, data=st.data())
def test_one_flipped_bit_is_caught_by_the_crc(
    seq: int, command_id: int, args: list[int], data: st.DataObject
) -> None:
    raw = bytearray(cobs_decode(encode_request(seq, command_id, args)[:-1]))
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(raw) - 1), label="bit")
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DeviceError):
        decode_request(cobs_encode(bytes(raw)))


@FRAME_SETTINGS
@given(
    frames=st.lists(st.tuples(u8, u8, int32s), min_size=1, max_size=3),
    noise=st.binary(max_size=20).map(lambda b: b.replace(b"\x00", b"")),
    data=st.data(),
)
def test_frames_split_from_a_stream_in_any_chunks(
    frames: list[tuple[int, int, list[int]]], noise: bytes, data: st.DataObject
) -> None:
    # Noise before the first delimiter is what a device says before it syncs; it is one
    # bad frame, and the frames after it come through whole.
    stream = noise + b"\x00" + b"".join(encode_reply(*frame) for frame in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts"))
    splitter, found = FrameSplitter(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        found += splitter.feed(stream[start:end])
    assert splitter.pending == b""
    decoded = [decode_reply(frame) for frame in found[1 if noise else 0 :]]
    assert [(r.seq, r.status, r.values) for r in decoded] == frames

"""Pure framing of what is said on a serial link: lines, raw replies and the standard frame.

Nothing here touches a port, so every rule can be tested on bytes alone.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.errors import DeviceError

# Line terminator most instruments use; "\r\n" from the device is accepted too.
DEFAULT_LINE_TERMINATOR = b"\n"
# Idle gap that ends a raw reply when the command says nothing about where it ends.
DEFAULT_RAW_IDLE_MS = 50

# Standard frame (DESIGN §5).
FRAME_VERSION = 0x01
FRAME_DELIMITER = b"\x00"
# Most args or values one frame may carry: nargs/nvalues is one byte, 64 bounds the frame size.
MAX_FRAME_ITEMS = 64
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
_HEADER = struct.Struct("<BBBB")
_CRC = struct.Struct("<H")
_CRC_INIT = 0xFFFF
# COBS code byte meaning "254 data bytes follow and no zero".
_COBS_FULL_BLOCK = 0xFF


def decode_line(raw: bytes) -> str:
    """Decode one received line: utf-8 (bad bytes replaced), CR/LF stripped from both ends."""
    return raw.decode("utf-8", errors="replace").strip("\r\n")


class LineFramer:
    """Splits a byte stream into text lines and keeps the partial last line for the next feed."""

    def __init__(self, terminator: bytes = DEFAULT_LINE_TERMINATOR) -> None:
        if not terminator:
            raise ValueError("line terminator must not be empty")
        self.terminator = terminator
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        """Add received bytes; return the lines they complete, in order."""
        *complete, self._buffer = (self._buffer + data).split(self.terminator)
        return [decode_line(raw) for raw in complete]

    def encode(self, text: str) -> bytes:
        """Wire bytes for one line of text."""
        return text.encode("utf-8") + self.terminator

    @property
    def pending(self) -> bytes:
        """Bytes of a line whose terminator has not arrived yet."""
        return self._buffer


class RawReplyAssembler:
    """Collects a raw reply that ends at a terminator, at a byte count, or after an idle gap.

    Whichever rule is met first ends the reply; bytes past its end are `leftover`.
    """

    def __init__(
        self,
        until: bytes | None = None,
        nbytes: int | None = None,
        idle_ms: int | None = None,
    ) -> None:
        if until is not None and not until:
            raise ValueError("until must not be empty")
        if nbytes is not None and nbytes < 1:
            raise ValueError("bytes must be at least 1")
        if idle_ms is not None and idle_ms < 0:
            raise ValueError("idle_ms must not be negative")
        if until is None and nbytes is None and idle_ms is None:
            idle_ms = DEFAULT_RAW_IDLE_MS
        self.until = until
        self.nbytes = nbytes
        self.idle_ms = idle_ms
        self._buffer = bytearray()
        self._end: int | None = None
        # Where the next terminator search starts, so a long reply is not rescanned per feed.
        self._scan_from = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data
        if self._end is not None:
            return
        ends: list[int] = []
        if self.until is not None:
            found = self._buffer.find(self.until, self._scan_from)
            if found >= 0:
                ends.append(found + len(self.until))
            else:
                self._scan_from = max(0, len(self._buffer) - len(self.until) + 1)
        if self.nbytes is not None and len(self._buffer) >= self.nbytes:
            ends.append(self.nbytes)
        if ends:
            self._end = min(ends)

    def complete(self, idle_for_s: float) -> bool:
        """True once the reply has ended, given how long the line has been quiet."""
        if self._end is not None:
            return True
        return (
            self.idle_ms is not None and bool(self._buffer) and idle_for_s * 1000.0 >= self.idle_ms
        )

    def wait_s(self, idle_for_s: float) -> float | None:
        """Seconds until the idle rule would end the reply, or None if it cannot yet."""
        if self.idle_ms is None or not self._buffer or self._end is not None:
            return None
        return max(0.0, self.idle_ms / 1000.0 - idle_for_s)

    @property
    def reply(self) -> bytes:
        """The reply: up to and including its end, or everything so far if no end was found."""
        if self._end is None:
            return bytes(self._buffer)
        return bytes(self._buffer[: self._end])

    @property
    def leftover(self) -> bytes:
        """Bytes received after the end of the reply."""
        if self._end is None:
            return b""
        return bytes(self._buffer[self._end :])


# --- standard frame (DESIGN §5) ---------------------------------------------------------


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    # crc_hqx is exactly this polynomial, unreflected; only the init value differs by name.
    return binascii.crc_hqx(data, _CRC_INIT)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result holds no 0x00 (delimiter not added)."""
    out = bytearray(b"\x00")
    code_at: int | None = 0
    code = 1
    last = len(data) - 1
    for index, byte in enumerate(data):
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == _COBS_FULL_BLOCK:
            assert code_at is not None
            out[code_at] = code
            code = 1
            # A full block that ends the data needs no further code byte.
            if not byte or index < last:
                code_at = len(out)
                out.append(0)
            else:
                code_at = None
    if code_at is not None:
        out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Undo cobs_encode; raise DeviceError if the bytes are not valid COBS."""
    out = bytearray()
    index = 0
    while index < len(data):
        code = data[index]
        if code == 0:
            raise DeviceError(f"bad COBS frame: zero byte at offset {index}")
        end = index + code
        if end > len(data):
            raise DeviceError(f"bad COBS frame: block at offset {index} runs past the end")
        block = data[index + 1 : end]
        if 0 in block:
            raise DeviceError("bad COBS frame: zero byte inside a block")
        out += block
        index = end
        if code != _COBS_FULL_BLOCK and index < len(data):
            out.append(0)
    return bytes(out)


@dataclass(frozen=True)
class FrameRequest:
    """A decoded request frame: what the host asked the device."""

    seq: int
    command_id: int
    args: list[int]


@dataclass(frozen=True)
class FrameReply:
    """A decoded reply frame: what the device answered."""

    seq: int
    status: int
    values: list[int]


def _check_u8(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be an integer 0..255, got {value!r}")


def _check_items(name: str, items: Sequence[int]) -> None:
    if len(items) > MAX_FRAME_ITEMS:
        raise ValueError(f"at most {MAX_FRAME_ITEMS} {name} fit in a frame, got {len(items)}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"{name} must be integers, got {item!r}")
        if not INT32_MIN <= item <= INT32_MAX:
            raise ValueError(f"{name} must fit in int32, got {item}")


def _encode_frame(seq: int, second: int, items: Sequence[int]) -> bytes:
    body = _HEADER.pack(FRAME_VERSION, seq, second, len(items))
    body += struct.pack(f"<{len(items)}i", *items)
    return cobs_encode(body + _CRC.pack(crc16_ccitt_false(body))) + FRAME_DELIMITER


def _decode_frame(frame: bytes) -> tuple[int, int, list[int]]:
    """Check and unpack one frame (without delimiter) into seq, second header byte, items."""
    raw = cobs_decode(frame)
    if len(raw) < _HEADER.size + _CRC.size:
        raise DeviceError(f"bad frame: {len(raw)} bytes is too short")
    body, (crc,) = raw[: -_CRC.size], _CRC.unpack(raw[-_CRC.size :])
    if crc != crc16_ccitt_false(body):
        raise DeviceError("bad frame: CRC mismatch")
    version, seq, second, count = _HEADER.unpack(body[: _HEADER.size])
    if version != FRAME_VERSION:
        raise DeviceError(f"bad frame: version {version}, expected {FRAME_VERSION}")
    if count > MAX_FRAME_ITEMS:
        raise DeviceError(f"bad frame: {count} items, at most {MAX_FRAME_ITEMS} allowed")
    if len(body) != _HEADER.size + 4 * count:
        raise DeviceError(f"bad frame: length {len(body)} does not match {count} items")
    return seq, second, list(struct.unpack(f"<{count}i", body[_HEADER.size :]))


def encode_request(seq: int, command_id: int, args: Sequence[int]) -> bytes:
    """Wire bytes of one request frame, delimiter included; ValueError on out-of-range input."""
    _check_u8("seq", seq)
    _check_u8("command_id", command_id)
    _check_items("args", args)
    return _encode_frame(seq, command_id, args)


def encode_reply(seq: int, status: int, values: Sequence[int]) -> bytes:
    """Wire bytes of one reply frame, delimiter included; ValueError on out-of-range input."""
    _check_u8("seq", seq)
    _check_u8("status", status)
    _check_items("values", values)
    return _encode_frame(seq, status, values)


def decode_request(frame: bytes) -> FrameRequest:
    """Decode one request frame (without its delimiter); DeviceError if it is malformed."""
    seq, command_id, args = _decode_frame(frame)
    return FrameRequest(seq=seq, command_id=command_id, args=args)


def decode_reply(frame: bytes) -> FrameReply:
    """Decode one reply frame (without its delimiter); DeviceError if it is malformed."""
    seq, status, values = _decode_frame(frame)
    return FrameReply(seq=seq, status=status, values=values)


class FrameSplitter:
    """Splits a byte stream at 0x00 delimiters into COBS frames, keeping a partial frame."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames they complete, without delimiters."""
        *complete, self._buffer = (self._buffer + data).split(FRAME_DELIMITER)
        # Back-to-back delimiters are how senders resynchronise, not empty frames.
        return [frame for frame in complete if frame]

    @property
    def pending(self) -> bytes:
        """Bytes of a frame whose delimiter has not arrived yet."""
        return self._buffer

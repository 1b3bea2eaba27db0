"""Readers of one reply each, for every command kind a device speaks: they take the bytes a
command's exchange receives and say when the reply is whole and what is noise."""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

from tasks.errors import DeviceError
from worker_host.codecs import (
    DEFAULT_LINE_TERMINATOR,
    FRAME_DELIMITER,
    FrameSplitter,
    RawReplyAssembler,
    decode_line,
    decode_reply,
)


class Reply(Protocol):
    """What the exchange needs from the reader of one kind of reply."""

    def feed(self, data: bytes) -> bytes:
        """Take received bytes; return those that are noise rather than part of the reply."""
        ...

    def complete(self, idle_for_s: float) -> bool:
        """True once the reply is whole."""
        ...

    def wait_s(self, idle_for_s: float) -> float | None:
        """Longest useful wait before complete() may change without new bytes, or None."""
        ...

    def unconsumed(self) -> bytes:
        """Bytes received but not part of the reply: the partial reply, or what followed it."""
        ...

    def response(self) -> dict[str, object]:
        """The command's response object (DESIGN §3)."""
        ...


class LineReply:
    """The next line the device sends."""

    def __init__(self, terminator: bytes = DEFAULT_LINE_TERMINATOR) -> None:
        self._terminator = terminator
        self._buffer = b""
        self._line: str | None = None

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if self._line is None:
            raw, found, rest = self._buffer.partition(self._terminator)
            if found:
                self._line, self._buffer = decode_line(raw), rest
        return b""

    def complete(self, idle_for_s: float) -> bool:
        return self._line is not None

    def wait_s(self, idle_for_s: float) -> float | None:
        return None

    def unconsumed(self) -> bytes:
        return self._buffer

    def response(self) -> dict[str, object]:
        return {"text": self._line}


class RawReply:
    """Bytes up to a terminator, a count, or an idle gap."""

    def __init__(self, assembler: RawReplyAssembler) -> None:
        self._assembler = assembler
        # The idle rule ends a reply by time, not by bytes, so remember that it did.
        self._done = False

    def feed(self, data: bytes) -> bytes:
        self._assembler.feed(data)
        return b""

    def complete(self, idle_for_s: float) -> bool:
        self._done = self._done or self._assembler.complete(idle_for_s)
        return self._done

    def wait_s(self, idle_for_s: float) -> float | None:
        return self._assembler.wait_s(idle_for_s)

    def unconsumed(self) -> bytes:
        return self._assembler.leftover if self._done else self._assembler.reply

    @property
    def data(self) -> bytes:
        """The reply's bytes."""
        return self._assembler.reply

    def response(self) -> dict[str, object]:
        return {"data": base64.b64encode(self._assembler.reply).decode("ascii")}


class NoReply:
    """Nothing: a raw command with `read: null` is done once its bytes are out."""

    def feed(self, data: bytes) -> bytes:
        return data

    def complete(self, idle_for_s: float) -> bool:
        return True

    def wait_s(self, idle_for_s: float) -> float | None:
        return None

    def unconsumed(self) -> bytes:
        return b""

    def response(self) -> dict[str, object]:
        return {"data": ""}


class FrameReply:
    """The reply frame with one sequence number (None: any); other or bad frames are noise."""

    def __init__(self, seq: int | None) -> None:
        self._seq = seq
        self._splitter = FrameSplitter()
        self._answer: dict[str, object] | None = None
        self._after = b""

    def feed(self, data: bytes) -> bytes:
        if self._answer is not None:
            self._after += data
            return b""
        noise = bytearray()
        frames = self._splitter.feed(data)
        for index, frame in enumerate(frames):
            try:
                reply = decode_reply(frame)
            except DeviceError:
                reply = None
            if reply is None or (self._seq is not None and reply.seq != self._seq):
                noise += frame + FRAME_DELIMITER
                continue
            self._answer = {"status": reply.status, "values": reply.values}
            later = frames[index + 1 :]
            self._after = b"".join(f + FRAME_DELIMITER for f in later) + self._splitter.pending
            break
        return bytes(noise)

    def complete(self, idle_for_s: float) -> bool:
        return self._answer is not None

    def wait_s(self, idle_for_s: float) -> float | None:
        return None

    def unconsumed(self) -> bytes:
        return self._after if self._answer is not None else self._splitter.pending

    def response(self) -> dict[str, object]:
        assert self._answer is not None
        return self._answer


def b64_field(field: str, value: object) -> bytes:
    """A base64 field's bytes; DeviceError naming the field if it is not base64."""
    if not isinstance(value, str):
        raise DeviceError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise DeviceError(f"{field} is not valid base64: {e}") from e


def raw_assembler(read: dict[str, object]) -> RawReplyAssembler:
    """Build the end-of-reply rules of a raw command from its `read` object."""
    until = read.get("until")
    try:
        return RawReplyAssembler(
            until=None if until is None else b64_field("read.until", until),
            nbytes=_optional_int(read, "bytes"),
            idle_ms=_optional_int(read, "idle_ms"),
        )
    except ValueError as e:
        raise DeviceError(f"bad read rule: {e}") from e


def _optional_int(read: dict[str, object], name: str) -> int | None:
    value = read.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeviceError(f"read.{name} must be an integer")
    return value

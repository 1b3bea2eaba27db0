"""Redis replies as text and as stream entries, typed for mypy.

hwq's clients leave replies as bytes, while redis-py types every reply for both its modes
(bytes, or str when a client decodes them), and a stream read for both protocol versions.
These helpers take either, so the code that reads a reply says what it expects once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A hash's or a stream entry's fields, from a client that decodes replies or one that does not.
Fields = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
# One stream entry: its id and its fields, as hwq's (non-decoding) clients return them.
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def text(value: bytes | str) -> str:
    """A reply value as str, whether the client decoded it or not."""
    return value.decode() if isinstance(value, bytes) else value


def text_fields(raw: Fields) -> dict[str, str]:
    """A hash's or a stream entry's fields as str."""
    return {text(k): text(v) for k, v in raw.items()}


def members(reply: Any) -> list[str]:
    """The members a set or sorted-set read (without scores) returned, as str."""
    return [text(member) for member in reply]


def stream_millis(entry_id: bytes | str) -> int:
    """The Redis time, in milliseconds, that a stream entry id starts with."""
    return int(text(entry_id).split("-", 1)[0])


def entries_of_one_stream(reply: Any) -> list[StreamEntry]:
    """The entries of an XREAD/XREADGROUP reply on a single stream (RESP2: [[key, entries]])."""
    return list(reply[0][1]) if reply else []

"""Bounds on free-form JSON: how deep it may nest and how large it may be, in and out.

Python's json and every reader after it (SQLAlchemy's result processing, Flask's encoder,
Redis decoding) recurse once per level, so one value nested hundreds deep breaks whichever of
them runs on the deepest stack: a listing that holds it fails for everyone. Accepted values
are bounded here, and stored values are read through `decode_stored_json`, which never lets
one too deep through.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# Deepest nesting a free-form field may have: enough for any structured note or setting.
MAX_JSON_DEPTH = 32
# Largest a free-form field may be, encoded as compact JSON.
MAX_JSON_BYTES = 64 * 1024
# What a stored value too deep to hand out reads as, instead of failing the whole read.
UNREADABLE_VALUE: dict[str, str] = {
    "unreadable": f"the stored value nests deeper than {MAX_JSON_DEPTH} levels"
}


# Deepest nesting a request body may have before it is decoded at all. Far above any field's
# bound, far below what the decoder's recursion survives on any thread's stack: a body
# decodes, or is refused, the same way whichever thread reads it.
MAX_BODY_DEPTH = 200
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def text_exceeds_depth(raw: bytes, limit: int = MAX_BODY_DEPTH) -> bool:
    """Whether the JSON text `raw` opens more than `limit` objects and arrays at once.

    Reads the text without decoding it (strings are skipped, so brackets inside them do not
    count), so it holds for invalid JSON too and never recurses.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _BRACKET.findall(_JSON_STRING.sub(b"", raw))
    return max(accumulate(1 if b in (b"[", b"{") else -1 for b in brackets)) > limit


def exceeds_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` nests objects and arrays more than `limit` deep; never recurses."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth + 1 > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def json_bound_problem(value: Any) -> str | None:
    """Why `value` may not be accepted as free-form JSON, or None when it may."""
    if exceeds_depth(value):
        return f"may nest at most {MAX_JSON_DEPTH} levels of objects and arrays"
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_JSON_BYTES:
        return f"may be at most {MAX_JSON_BYTES} bytes as JSON, not {size}"
    return None


def decode_stored_json(text: str | bytes) -> Any:
    """A stored JSON value, or UNREADABLE_VALUE where it nests too deep to hand out."""
    # A text with few brackets cannot nest deeply: two scans in C spare the walk below.
    sample = text.decode() if isinstance(text, bytes) else text
    if sample.count("[") + sample.count("{") <= MAX_JSON_DEPTH:
        return json.loads(sample)
    try:
        value = json.loads(sample)
    except RecursionError:
        return UNREADABLE_VALUE
    return UNREADABLE_VALUE if exceeds_depth(value) else value

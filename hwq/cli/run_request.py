"""The submission `hwq run` sends, from what was typed: the payload of each kind and the analysis.

Mistakes in them are usage errors caught here, before any request, so a bad frame or
base64 payload never reaches the queue.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import click

from hwq.cli.formatting import json_or_text

# Bounds of a standard frame's command id and arguments (DESIGN §5).
FRAME_COMMAND_IDS = range(0, 256)
INT32 = range(-(2**31), 2**31)


def parse_frame_payload(text: str) -> dict[str, Any]:
    """`COMMAND_ID[,ARG,...]` as a frame payload: `2,5,7` → `{command_id: 2, args: [5, 7]}`."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not COMMAND_ID[,ARG,...] in decimal integers, e.g. 2,5,7",
            param_hint="PAYLOAD",
        ) from None
    command_id, *args = numbers
    if command_id not in FRAME_COMMAND_IDS:
        raise click.BadParameter(
            f"frame command id {command_id} is outside 0..255", param_hint="PAYLOAD"
        )
    for arg in args:
        if arg not in INT32:
            raise click.BadParameter(f"frame argument {arg} is not an int32", param_hint="PAYLOAD")
    return {"command_id": command_id, "args": args}


def _raw_payload(text: str, is_base64: bool) -> str:
    if not is_base64:
        return base64.b64encode(text.encode()).decode()
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        raise click.BadParameter(f"{text!r} is not standard base64", param_hint="PAYLOAD") from None
    return text


def command_payload(kind: str, text: str, is_base64: bool) -> object:
    """PAYLOAD as the API takes it for this kind: base64 for raw, a dict for frame, else text."""
    if is_base64 and kind != "raw":
        raise click.UsageError("--base64 applies only to --kind raw")
    if kind == "raw":
        return _raw_payload(text, is_base64)
    if kind == "frame":
        return parse_frame_payload(text)
    return text


def analysis_request(analyzer: str | None, params: Sequence[str]) -> dict[str, Any] | None:
    """`--analysis NAME --param k=v …` as the submission's analysis; None without an analyzer."""
    if analyzer is None:
        if params:
            raise click.UsageError("--param needs --analysis NAME")
        return None
    parsed: dict[str, object] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{param!r} is not key=value", param_hint="--param")
        parsed[key] = json_or_text(value)
    return {"analyzer": analyzer, "params": parsed}

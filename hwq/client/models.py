"""What the client returns: typed views of the API's JSON (DESIGN §3), each keeping its raw
dict in `.raw` for fields newer than this client."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

# Terminal command states (DESIGN §2): a command in one of them never changes again.
TERMINAL_STATES = frozenset({"done", "failed", "timed_out", "expired", "cancelled", "interrupted"})


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True)
class Command:
    """A command and, once there is one, its reply; times are ISO 8601 UTC strings."""

    id: str
    device: str
    state: str
    kind: str = "line"
    payload: Any = None
    user: str | None = None
    response: dict[str, Any] | None = None
    analysis: Any = None
    error: str | None = None
    attempts: int = 0
    created_at: str | None = None
    dispatched_at: str | None = None
    responded_at: str | None = None
    finished_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Command:
        """A command from the API's JSON."""
        return cls(
            id=str(data["id"]),
            device=str(data.get("device", "")),
            state=str(data["state"]),
            kind=str(data.get("kind", "line")),
            payload=data.get("payload"),
            user=_text(data, "user"),
            response=data.get("response"),
            analysis=data.get("analysis"),
            error=_text(data, "error"),
            attempts=int(data.get("attempts") or 0),
            created_at=_text(data, "created_at"),
            dispatched_at=_text(data, "dispatched_at"),
            responded_at=_text(data, "responded_at"),
            finished_at=_text(data, "finished_at"),
            raw=data,
        )

    @property
    def terminal(self) -> bool:
        """Whether the command has ended for good."""
        return self.state in TERMINAL_STATES

    @property
    def settled(self) -> bool:
        """Terminal, or responded and waiting for a person's analysis: nothing more comes
        without someone acting."""
        if self.terminal:
            return True
        analysis = self.analysis if isinstance(self.analysis, dict) else {}
        return self.state == "responded" and analysis.get("analyzer") == "manual"

    @property
    def text(self) -> str | None:
        """The reply of a line command."""
        response = self.response or {}
        value = response.get("text")
        return None if value is None else str(value)


@dataclass(frozen=True)
class Page:
    """One page of command history, newest first; `next_cursor` asks for the next."""

    items: list[Command]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Page:
        """A page from the API's JSON."""
        return cls([Command.from_json(c) for c in data["items"]], data.get("next_cursor"))


@dataclass(frozen=True)
class Event:
    """One transition of a command."""

    state: str
    at: str
    detail: Any = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """An event from the API's JSON."""
        return cls(str(data["state"]), str(data["at"]), data.get("detail"))


@dataclass(frozen=True)
class Device:
    """A registered device and its live state."""

    name: str
    transport: str = "serial"
    address: str | None = None
    baudrate: int | None = None
    codec: str = "line"
    options: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    active: bool = True
    presence: str | None = None
    error: str | None = None
    online: bool = False
    last_seen: str | None = None
    state: int = 0
    queue_depth: int = 0
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Device:
        """A device from the API's JSON (fields an older API lacks take their defaults)."""
        return cls(
            name=str(data["name"]),
            transport=str(data.get("transport", "serial")),
            address=_text(data, "address"),
            baudrate=data.get("baudrate"),
            codec=str(data.get("codec", "line")),
            options=dict(data.get("options") or {}),
            host=_text(data, "host"),
            active=bool(data.get("active", True)),
            presence=_text(data, "presence"),
            error=_text(data, "error"),
            online=bool(data.get("online")),
            last_seen=_text(data, "last_seen"),
            state=int(data.get("state") or 0),
            queue_depth=int(data.get("queue_depth") or 0),
            created_at=_text(data, "created_at"),
            raw=data,
        )


@dataclass(frozen=True)
class Host:
    """A host agent: whether it is up and the devices it serves."""

    name: str
    online: bool
    last_seen: str | None
    devices: list[str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Host:
        """A host from the API's JSON."""
        return cls(
            str(data["name"]),
            bool(data.get("online")),
            _text(data, "last_seen"),
            [str(d) for d in data.get("devices") or []],
        )


@dataclass(frozen=True)
class Port:
    """A serial port a host sees; `device` is the hwq device bound to it, if any."""

    path: str
    by_id: str | None = None
    description: str | None = None
    hwid: str | None = None
    vid: str | None = None
    pid: str | None = None
    serial_number: str | None = None
    location: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    device: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Port:
        """A port from the API's JSON."""
        names = ("by_id", "description", "hwid", "vid", "pid", "serial_number", "location",
                 "manufacturer", "product", "device")  # fmt: skip
        return cls(str(data["path"]), **{name: _text(data, name) for name in names})


@dataclass(frozen=True)
class Token:
    """A bearer token as an admin sees it: never its secret."""

    id: int
    name: str
    role: str
    device: str | None = None
    created_at: str | None = None
    last_used_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        """A token from the API's JSON."""
        return cls(
            int(data["id"]),
            str(data["name"]),
            str(data["role"]),
            _text(data, "device"),
            _text(data, "created_at"),
            _text(data, "last_used_at"),
        )


@dataclass(frozen=True)
class StreamEvent:
    """One event of a device's live stream (DESIGN §9): bytes read (`rx`) or written (`tx`),
    a presence change or a command's state; `fields` holds the decoded JSON of the last two."""

    id: str
    kind: str
    at: str | None
    data: bytes
    text: str | None = None
    command_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sse(cls, event_id: str, kind: str, data: str) -> StreamEvent:
        """An event from one Server-Sent Event's id, name and data line(s)."""
        document = json.loads(data) if data else {}
        if not isinstance(document, dict):
            document = {}
        try:
            raw = base64.b64decode(document.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        known = {"at", "data", "text", "command_id"}
        return cls(
            id=event_id,
            kind=kind or "message",
            at=_text(document, "at"),
            data=raw,
            text=_text(document, "text"),
            command_id=_text(document, "command_id") or None,
            fields={k: v for k, v in document.items() if k not in known},
        )

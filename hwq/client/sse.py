"""Server-Sent Events, parsed line by line (the WHATWG event-stream rules hwq's stream uses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwq.client.models import StreamEvent


@dataclass
class SseParser:
    """Feed it the stream's lines; it returns each event once its blank line arrives."""

    last_id: str = ""
    _kind: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> StreamEvent | None:
        """Take one line (without its ending); the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: the server's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._kind = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> StreamEvent | None:
        kind, data = self._kind, "\n".join(self._data)
        self._kind, self._data = "", []
        if not data and not kind:
            return None
        return StreamEvent.from_sse(self.last_id, kind, data)

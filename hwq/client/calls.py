"""The requests of the API's routes, described once for the sync and the async client: what
to send, and how to read the answer."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hwq.client.errors import HwqClientError, ServerError, problem_error
from hwq.client.models import Command, Device, Event, Host, Page, Port, Token

T = TypeVar("T")

API_PREFIX = "/api/v1"
# The longest wait the API holds in one request (DESIGN §3).
MAX_WAIT_S = 60.0


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how its answer becomes a result."""

    method: str
    path: str
    read: Callable[[Any], T]
    body: dict[str, Any] | None = None
    query: Mapping[str, object] | None = None
    headers: Mapping[str, str] | None = None
    # How long the server may legitimately hold the request before answering.
    hold_s: float = 0.0

    @property
    def params(self) -> dict[str, str]:
        """The query without unset values."""
        return {k: _query_value(v) for k, v in (self.query or {}).items() if v is not None}


def _query_value(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def segment(value: str) -> str:
    """One path segment, quoted so a name can never reach another route."""
    return urllib.parse.quote(value, safe="")


def decode_answer(base_url: str, what: str, status: int, raw: bytes) -> Any:
    """An answer's JSON (None when empty); an error status raises its exception."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = None
        if status < 400:
            raise not_the_api(base_url, what) from None
    if status >= 400:
        raise problem_error(status, body, raw)
    return body


def not_the_api(base_url: str, what: str) -> HwqClientError:
    """The error for an answer that is not the hwq API's JSON."""
    return ServerError(
        f"{base_url} answered {what} with something other than the hwq API's JSON; "
        "is HWQ_URL the hwq API?",
        status=502,
        title="Not the hwq API",
    )


class Answer:
    """Readers of answer bodies; each refuses a shape that is not the API's."""

    def __init__(self, base_url: str, what: str) -> None:
        self.base_url = base_url
        self.what = what

    def obj(self, body: Any) -> dict[str, Any]:
        """A JSON object (an empty answer reads as {})."""
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise not_the_api(self.base_url, self.what)
        return body

    def items(self, body: Any) -> list[dict[str, Any]]:
        """The `items` of a listing."""
        items = self.obj(body).get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise not_the_api(self.base_url, self.what)
        return items

    def model(self, build: Callable[[dict[str, Any]], T]) -> Callable[[Any], T]:
        """A reader that builds a model from an object, refusing one it cannot read."""

        def read(body: Any) -> T:
            try:
                return build(self.obj(body))
            except (KeyError, TypeError, ValueError):
                raise not_the_api(self.base_url, self.what) from None

        return read

    def models(self, build: Callable[[dict[str, Any]], T]) -> Callable[[Any], list[T]]:
        """A reader that builds a model from each of a listing's items."""

        def read(body: Any) -> list[T]:
            try:
                return [build(item) for item in self.items(body)]
            except (KeyError, TypeError, ValueError):
                raise not_the_api(self.base_url, self.what) from None

        return read


class Routes:
    """The Call of each route of the API, for one base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _call(
        self, method: str, path: str, reader: Callable[[Answer], Callable[[Any], T]], **kw: Any
    ) -> Call[T]:
        """A Call whose answer `reader` reads, given the Answer readers of this route."""
        return Call(method, path, reader(Answer(self.base_url, f"{method} {path}")), **kw)

    # health and devices

    def health(self) -> Call[dict[str, Any]]:
        return self._call("GET", "/health", _object)

    def devices(self) -> Call[list[Device]]:
        return self._call("GET", "/devices", _models(Device.from_json))

    def device(self, name: str) -> Call[Device]:
        return self._call("GET", f"/devices/{segment(name)}", _model(Device.from_json))

    def add_device(self, spec: Mapping[str, Any]) -> Call[Device]:
        return self._call("POST", "/devices", _model(Device.from_json), body=dict(spec))

    def update_device(self, name: str, changes: Mapping[str, Any]) -> Call[Device]:
        path = f"/devices/{segment(name)}"
        return self._call("PATCH", path, _model(Device.from_json), body=dict(changes))

    def remove_device(self, name: str) -> Call[None]:
        return self._call("DELETE", f"/devices/{segment(name)}", _nothing)

    def set_active(self, name: str, active: bool) -> Call[Device]:
        action = "activate" if active else "deactivate"
        return self._call("POST", f"/devices/{segment(name)}/{action}", _model(Device.from_json))

    def stream(self, name: str, since: str | None) -> Call[None]:
        """The device's live stream; its body is read as events, not by the Call."""
        headers = {"Accept": "text/event-stream"}
        if since:
            headers["Last-Event-ID"] = since
        return self._call("GET", f"/devices/{segment(name)}/stream", _nothing, headers=headers)

    def hosts(self) -> Call[list[Host]]:
        return self._call("GET", "/hosts", _models(Host.from_json))

    def ports(self, host: str) -> Call[list[Port]]:
        return self._call("GET", f"/hosts/{segment(host)}/ports", _models(Port.from_json))

    # commands

    def submit(
        self,
        device: str,
        request: Mapping[str, Any],
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Call[Command]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call(
            "POST", f"/devices/{segment(device)}/commands", _model(Command.from_json),
            body=dict(request), query={"wait": wait}, headers=headers, hold_s=wait or 0.0,
        )  # fmt: skip

    def get(self, command_id: str, wait: float | None = None) -> Call[Command]:
        return self._call(
            "GET", f"/commands/{segment(command_id)}", _model(Command.from_json),
            query={"wait": wait}, hold_s=wait or 0.0,
        )  # fmt: skip

    def page(
        self, device: str | None, state: str | None, limit: int | None, cursor: str | None
    ) -> Call[Page]:
        query = {"device": device, "state": state, "limit": limit, "cursor": cursor}
        return self._call("GET", "/commands", _model(Page.from_json), query=query)

    def cancel(self, command_id: str) -> Call[Command]:
        path = f"/commands/{segment(command_id)}/cancel"
        return self._call("POST", path, _model(Command.from_json))

    def analyse(self, command_id: str, value: object) -> Call[Command]:
        path = f"/commands/{segment(command_id)}/analysis"
        return self._call("POST", path, _model(Command.from_json), body={"value": value})

    def events(self, command_id: str) -> Call[list[Event]]:
        path = f"/commands/{segment(command_id)}/events"
        return self._call("GET", path, _models(Event.from_json))

    # tokens

    def tokens(self) -> Call[list[Token]]:
        return self._call("GET", "/tokens", _models(Token.from_json))

    def revoke_token(self, token_id: int) -> Call[None]:
        return self._call("DELETE", f"/tokens/{int(token_id)}", _nothing)


def _object(answer: Answer) -> Callable[[Any], dict[str, Any]]:
    return answer.obj


def _nothing(_answer: Answer) -> Callable[[Any], None]:
    return lambda _body: None


def _model(build: Callable[[dict[str, Any]], T]) -> Callable[[Answer], Callable[[Any], T]]:
    return lambda answer: answer.model(build)


def _models(build: Callable[[dict[str, Any]], T]) -> Callable[[Answer], Callable[[Any], list[T]]]:
    return lambda answer: answer.models(build)


def command_request(
    payload: object,
    kind: str,
    timeout: float | None,
    analysis: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """The submission body of a command."""
    body: dict[str, Any] = {"kind": kind, "payload": payload, **options}
    if timeout is not None:
        body["timeout_s"] = timeout
    if analysis is not None:
        body["analysis"] = dict(analysis)
    return body


def wait_rounds(total_s: float) -> float:
    """The wait to ask of one request, out of what is left of a total."""
    return max(0.0, min(MAX_WAIT_S, total_s))

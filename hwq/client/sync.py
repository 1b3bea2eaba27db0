"""The blocking client: `Client(url, token).run("sim0", "*IDN?")`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import httpx

from hwq.client.base import DEFAULT_TIMEOUT_S, RUN_QUEUE_ALLOWANCE_S, ClientBase
from hwq.client.calls import Call, command_request, decode_answer, wait_rounds
from hwq.client.models import Command, Device, Event, Host, Page, Port, StreamEvent, Token
from hwq.client.sse import SseParser

T = TypeVar("T")


class Client(ClientBase):
    """Calls the hwq API as the holder of one bearer token, on one kept-alive connection pool.

    Every error is a `HwqClientError` (hwq.client.errors), one class per problem status.
    """

    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers())

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, call: Call[T]) -> T:
        """Send one request and read its answer."""
        try:
            answer = self._http.request(**self._request_options(call))
        except httpx.HTTPError as e:
            raise self._transport_error(call, e) from None
        what = f"{call.method} {call.path}"
        return call.read(decode_answer(self.base_url, what, answer.status_code, answer.content))

    # commands

    def run(
        self,
        device: str,
        payload: object,
        kind: str = "line",
        timeout: float = 5.0,
        analysis: Mapping[str, Any] | None = None,
        wait: float | None = None,
        **options: Any,
    ) -> Command:
        """Submit a command and return it once it settles: one request when it settles within
        a minute. `wait` bounds the whole wait (default: its timeout plus time in the queue);
        past it, the command is returned as it stands."""
        total = timeout + RUN_QUEUE_ALLOWANCE_S if wait is None else wait
        deadline = time.monotonic() + total
        body = command_request(payload, kind, timeout, analysis, options)
        command = self.call(self.routes.submit(device, body, wait=wait_rounds(total) or None))
        return self._wait_until(command, deadline)

    def submit(
        self,
        device: str,
        payload: object,
        kind: str = "line",
        timeout: float | None = None,
        analysis: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Command:
        """Queue a command and return it at once (state `queued`)."""
        body = command_request(payload, kind, timeout, analysis, options)
        return self.call(self.routes.submit(device, body, idempotency_key=idempotency_key))

    def wait(self, command_id: str, timeout: float = 60.0) -> Command:
        """The command once it settles, or as it stands after `timeout` seconds."""
        command = self.call(self.routes.get(command_id, wait=wait_rounds(timeout) or None))
        return self._wait_until(command, time.monotonic() + timeout)

    def _wait_until(self, command: Command, deadline: float) -> Command:
        while not command.settled:
            remaining = wait_rounds(deadline - time.monotonic())
            if not remaining:
                break
            command = self.call(self.routes.get(command.id, wait=remaining))
        return command

    def get(self, command_id: str) -> Command:
        """A command as it stands."""
        return self.call(self.routes.get(command_id))

    def cancel(self, command_id: str) -> Command:
        """Cancel a queued command (Conflict once it has left the queue)."""
        return self.call(self.routes.cancel(command_id))

    def analyse(self, command_id: str, value: object) -> Command:
        """Record the analysis of a command that asked for a manual one."""
        return self.call(self.routes.analyse(command_id, value))

    def events(self, command_id: str) -> list[Event]:
        """A command's transitions, oldest first."""
        return self.call(self.routes.events(command_id))

    def history_pages(
        self,
        device: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        """Pages of command history, newest first, `limit` commands a page, until the last."""
        while True:
            page = self.call(self.routes.page(device, state, limit, cursor))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def history(
        self, device: str | None = None, state: str | None = None, limit: int | None = None
    ) -> Iterator[Command]:
        """Commands, newest first, across pages fetched as the iteration reaches them; `limit`
        is the page size."""
        for page in self.history_pages(device, state, limit):
            yield from page.items

    # devices, hosts, tokens

    def health(self) -> dict[str, Any]:
        """The API's health report."""
        return self.call(self.routes.health())

    def devices(self) -> list[Device]:
        """Every registered device."""
        return self.call(self.routes.devices())

    def device(self, name: str) -> Device:
        """One device."""
        return self.call(self.routes.device(name))

    def add_device(self, name: str, **spec: Any) -> Device:
        """Register a device (admin): transport, address, baudrate, codec, options, host."""
        return self.call(self.routes.add_device({"name": name, **spec}))

    def update_device(self, name: str, **changes: Any) -> Device:
        """Change a device's settings, or rename it with `name=` (admin)."""
        return self.call(self.routes.update_device(name, changes))

    def remove_device(self, name: str) -> None:
        """Forget a device (admin)."""
        self.call(self.routes.remove_device(name))

    def activate(self, name: str) -> Device:
        """Open the device's connection (admin)."""
        return self.call(self.routes.set_active(name, True))

    def deactivate(self, name: str) -> Device:
        """Close the device's connection; its queue waits (admin)."""
        return self.call(self.routes.set_active(name, False))

    def hosts(self) -> list[Host]:
        """The host agents."""
        return self.call(self.routes.hosts())

    def ports(self, host: str) -> list[Port]:
        """The serial ports a host sees."""
        return self.call(self.routes.ports(host))

    def tokens(self) -> list[Token]:
        """Every token, without its secret (admin)."""
        return self.call(self.routes.tokens())

    def revoke_token(self, token_id: int) -> None:
        """Revoke a token at once on every API process (admin)."""
        self.call(self.routes.revoke_token(token_id))

    # live output

    def stream(self, device: str, since: str | None = None) -> Iterator[StreamEvent]:
        """The device's live events (DESIGN §9) as they come, after stream id `since` if
        given; runs until the caller stops iterating or the connection ends."""
        call = self.routes.stream(device, since)
        try:
            with self._http.stream(**self._stream_options(call)) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    decode_answer(self.base_url, call.path, answer.status_code, answer.content)
                parser = SseParser()
                for line in answer.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.HTTPError as e:
            raise self._transport_error(call, e) from None

"""The asyncio client: the same calls and models as `Client`, awaited."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import httpx

from hwq.client.base import DEFAULT_TIMEOUT_S, RUN_QUEUE_ALLOWANCE_S, ClientBase
from hwq.client.calls import Call, command_request, decode_answer, wait_rounds
from hwq.client.models import Command, Device, Event, Host, Page, Port, StreamEvent, Token
from hwq.client.sse import SseParser

T = TypeVar("T")


class AsyncClient(ClientBase):
    """`Client` for asyncio: every call is a coroutine, history and stream async iterators."""

    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers())

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send one request and read its answer."""
        try:
            answer = await self._http.request(**self._request_options(call))
        except httpx.HTTPError as e:
            raise self._transport_error(call, e) from None
        what = f"{call.method} {call.path}"
        return call.read(decode_answer(self.base_url, what, answer.status_code, answer.content))

    # commands

    async def run(
        self,
        device: str,
        payload: object,
        kind: str = "line",
        timeout: float = 5.0,
        analysis: Mapping[str, Any] | None = None,
        wait: float | None = None,
        **options: Any,
    ) -> Command:
        """Submit a command and return it once it settles (see `Client.run`)."""
        total = timeout + RUN_QUEUE_ALLOWANCE_S if wait is None else wait
        deadline = time.monotonic() + total
        body = command_request(payload, kind, timeout, analysis, options)
        command = await self.call(self.routes.submit(device, body, wait=wait_rounds(total) or None))
        return await self._wait_until(command, deadline)

    async def submit(
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
        return await self.call(self.routes.submit(device, body, idempotency_key=idempotency_key))

    async def wait(self, command_id: str, timeout: float = 60.0) -> Command:
        """The command once it settles, or as it stands after `timeout` seconds."""
        command = await self.call(self.routes.get(command_id, wait=wait_rounds(timeout) or None))
        return await self._wait_until(command, time.monotonic() + timeout)

    async def _wait_until(self, command: Command, deadline: float) -> Command:
        while not command.settled:
            remaining = wait_rounds(deadline - time.monotonic())
            if not remaining:
                break
            command = await self.call(self.routes.get(command.id, wait=remaining))
        return command

    async def get(self, command_id: str) -> Command:
        """A command as it stands."""
        return await self.call(self.routes.get(command_id))

    async def cancel(self, command_id: str) -> Command:
        """Cancel a queued command (Conflict once it has left the queue)."""
        return await self.call(self.routes.cancel(command_id))

    async def analyse(self, command_id: str, value: object) -> Command:
        """Record the analysis of a command that asked for a manual one."""
        return await self.call(self.routes.analyse(command_id, value))

    async def events(self, command_id: str) -> list[Event]:
        """A command's transitions, oldest first."""
        return await self.call(self.routes.events(command_id))

    async def history_pages(
        self,
        device: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> AsyncIterator[Page]:
        """Pages of command history, newest first, until the last."""
        while True:
            page = await self.call(self.routes.page(device, state, limit, cursor))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def history(
        self, device: str | None = None, state: str | None = None, limit: int | None = None
    ) -> AsyncIterator[Command]:
        """Commands, newest first, across pages; `limit` is the page size."""
        async for page in self.history_pages(device, state, limit):
            for command in page.items:
                yield command

    # devices, hosts, tokens

    async def health(self) -> dict[str, Any]:
        """The API's health report."""
        return await self.call(self.routes.health())

    async def devices(self) -> list[Device]:
        """Every registered device."""
        return await self.call(self.routes.devices())

    async def device(self, name: str) -> Device:
        """One device."""
        return await self.call(self.routes.device(name))

    async def add_device(self, name: str, **spec: Any) -> Device:
        """Register a device (admin): transport, address, baudrate, codec, options, host."""
        return await self.call(self.routes.add_device({"name": name, **spec}))

    async def update_device(self, name: str, **changes: Any) -> Device:
        """Change a device's settings, or rename it with `name=` (admin)."""
        return await self.call(self.routes.update_device(name, changes))

    async def remove_device(self, name: str) -> None:
        """Forget a device (admin)."""
        await self.call(self.routes.remove_device(name))

    async def activate(self, name: str) -> Device:
        """Open the device's connection (admin)."""
        return await self.call(self.routes.set_active(name, True))

    async def deactivate(self, name: str) -> Device:
        """Close the device's connection; its queue waits (admin)."""
        return await self.call(self.routes.set_active(name, False))

    async def hosts(self) -> list[Host]:
        """The host agents."""
        return await self.call(self.routes.hosts())

    async def ports(self, host: str) -> list[Port]:
        """The serial ports a host sees."""
        return await self.call(self.routes.ports(host))

    async def tokens(self) -> list[Token]:
        """Every token, without its secret (admin)."""
        return await self.call(self.routes.tokens())

    async def revoke_token(self, token_id: int) -> None:
        """Revoke a token at once on every API process (admin)."""
        await self.call(self.routes.revoke_token(token_id))

    # live output

    async def stream(self, device: str, since: str | None = None) -> AsyncIterator[StreamEvent]:
        """The device's live events as they come, after stream id `since` if given."""
        call = self.routes.stream(device, since)
        try:
            async with self._http.stream(**self._stream_options(call)) as answer:
                if answer.status_code >= 400:
                    await answer.aread()
                    decode_answer(self.base_url, call.path, answer.status_code, answer.content)
                parser = SseParser()
                async for line in answer.aiter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.HTTPError as e:
            raise self._transport_error(call, e) from None

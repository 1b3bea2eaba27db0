"""Requests the front door holds open without a thread (long-polls now, streams later):
how many it holds, in all and per token, and what it answers past either cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tasks.errors import HwqError, ServiceUnavailable, TooManyWaits

T = TypeVar("T")

# What a refused wait is told to wait before it asks again: a held wait ends within a minute,
# most much sooner.
RETRY_AFTER_S = 5

Receive = Callable[[], Awaitable[dict[str, Any]]]


class WaitRefused(HwqError):
    """A wait past a cap; carries the problem to answer and when to ask again."""

    def __init__(self, problem: HwqError) -> None:
        super().__init__(str(problem))
        self.problem = problem
        self.retry_after_s = RETRY_AFTER_S


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


class HeldWaits:
    """Counts held requests; one past the overall cap gets 503, past its token's cap 429.

    Used from the event loop's thread only, so plain counters need no lock.
    """

    def __init__(self, most: int, most_per_token: int) -> None:
        self.most = most
        self.most_per_token = most_per_token
        self.held = 0
        self._per_token: Counter[str] = Counter()

    @contextmanager
    def hold(self, token: str) -> Iterator[None]:
        """Count one held request of `token` for the block; raises WaitRefused past a cap."""
        if self.held >= self.most:
            raise WaitRefused(
                ServiceUnavailable(
                    f"the API holds {self.most} waits already (HWQ_MAX_WAITS); ask again shortly"
                )
            )
        if self._per_token[token] >= self.most_per_token:
            raise WaitRefused(
                TooManyWaits(
                    f"this token holds {self.most_per_token} waits already "
                    "(HWQ_MAX_WAITS_PER_TOKEN); ask again once one has ended"
                )
            )
        self.held += 1
        self._per_token[token] += 1
        try:
            yield
        finally:
            self.held -= 1
            self._per_token[token] -= 1
            if not self._per_token[token]:
                del self._per_token[token]


async def unless_client_leaves(
    receive: Receive, work: Awaitable[T], *, let_work_settle: bool = False
) -> T:
    """The result of `work`, or ClientGone as soon as the client disconnects (work cancelled).

    For a request whose body has been read (or has none): ASGI's next `receive` then returns
    only when the client goes. `let_work_settle`: ClientGone only once the cancelled work has
    finished unwinding (so what it changed meanwhile is known).
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    if let_work_settle:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    raise ClientGone


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body"):
            # The (empty) body came first; the next message is the disconnect.
            continue

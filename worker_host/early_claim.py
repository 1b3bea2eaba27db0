"""A command's claim, sent to Redis the moment its message arrives and read when it runs.

Between a device worker's event loop receiving a message and its pool thread starting the
command, Celery builds the request, sends the received event and hands the task to the pool
thread: about 0.2 ms. The claim (queued → dispatched) used to start only after that, and
then waited a Redis round trip of its own before any byte could go to the port. Here the
loop thread sends the claim as soon as Celery announces the message (the `task_received`
signal), on a connection of its own, and the pool thread reads the reply when the command
starts, usually already there. Nothing about the claim changes: the same atomic script
checks state, cancel flag and deadline, only earlier by the length of the hand-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import redis
from redis.exceptions import NoScriptError

from tasks.live_store import LiveStore, TransitionResult

log = logging.getLogger("hwq.device")


class EarlyClaims:
    """Claims sent ahead by the loop thread, read back in order by the command's thread."""

    def __init__(self, live: LiveStore, worker: str) -> None:
        self.live = live
        self.worker = worker
        # One lock for the connection: the loop thread writes to it, the pool thread reads.
        self._lock = threading.Lock()
        self._connection: Any = None
        # Commands whose claim replies are still unread, in the order they were sent, each
        # with the time it was sent: the claim ran no earlier than that.
        self._unread: deque[tuple[str, float]] = deque()

    def send(self, command_id: str) -> None:
        """Send the claim of `command_id` without waiting for its reply."""
        with self._lock:
            sent_at = time.monotonic()
            try:
                args = self.live.claim_args(command_id, self.worker)
                self._connect().send_command("EVALSHA", self.live.script_sha, 0, *args)
            except redis.RedisError as e:
                # Not sent, or not whole: the command's thread claims the ordinary way.
                self._drop(e)
                return
            self._unread.append((command_id, sent_at))

    def claim(self, command_id: str) -> tuple[TransitionResult, float]:
        """The outcome of the claim of `command_id`, and a time no later than it ran.

        The reply of a claim sent ahead is read here; a command whose claim was not sent,
        did not run (Redis had forgotten the script) or was lost with its connection is
        claimed now, the ordinary way.
        """
        with self._lock:
            if any(sent == command_id for sent, _ in self._unread):
                try:
                    outcome = self._read_until(command_id)
                except (redis.ConnectionError, redis.TimeoutError) as e:
                    self._drop(e)
                else:
                    if outcome is not None:
                        return outcome
        return self.live.claim(command_id, self.worker), time.monotonic()

    def _read_until(self, command_id: str) -> tuple[TransitionResult, float] | None:
        while self._unread:
            sent, sent_at = self._unread.popleft()
            try:
                reply = self._connection.read_response()
            except NoScriptError:
                # Redis forgot the script (a restart): that claim never ran.
                if sent == command_id:
                    return None
                continue
            result = self.live.transition_result(reply)
            if sent == command_id:
                return result, sent_at
            # A message whose command never started here: its lease or the reaper settle it.
            log.warning(
                "claim of a command that did not start",
                extra={"command": sent, "worker": self.worker, "moved": result.moved},
            )
        return None

    def _connect(self) -> Any:
        if self._connection is None:
            pool = self.live.redis.connection_pool
            self._connection = pool.connection_class(**pool.connection_kwargs)
        return self._connection

    def _drop(self, error: Exception) -> None:
        log.warning("claim connection lost", extra={"worker": self.worker, "error": str(error)})
        self._disconnect()

    def _disconnect(self) -> None:
        # Replies still unread go with the connection.
        self._unread.clear()
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None

    def close(self) -> None:
        """Close the connection of early claims."""
        with self._lock:
            self._disconnect()

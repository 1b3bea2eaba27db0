"""A device worker's command thread: pops the device's queue and runs each command in turn.

The device worker is a Celery worker: its event loop carries the worker's name, heartbeats,
Flower and remote control. The device's commands do not go through that loop. Taking each
message through Celery's consumer (the loop's poll, the request, the hand-off to the pool
thread and back, the task events flushed on the loop) cost a device worker more CPU per
command than the command itself: at 16 busy devices, 1.7–1.9 ms against 1.05–1.2 ms with
this thread (bench/README.md). Here one thread pops the device's Celery messages with a
blocking pop, claims and runs each command, and sends Flower the task events Celery would
have sent (received, started, succeeded), in batches.

The semantics are those the worker had with kombu's ack emulation off: popping a message is
receiving it, and the claim is its acknowledgement. A message popped by a worker that dies
before claiming leaves its command queued with no message, which the reaper publishes again;
one popped while the worker is stopping goes back to the head of the queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.worker import state as worker_state

from tasks.broker_transport import blocking_client_id
from tasks.celery_app import EXECUTE_TASK
from tasks.messages import command_of
from tasks.queues import device_queue
from worker_host.device_runtime import DeviceRuntime

log = logging.getLogger("hwq.device")

# How long task events may wait to share a publish; Flower shows them this much later, each
# with the time it was made at. Celery's loop would publish three per command.
EVENT_BATCH_S = 0.2
# An idle device's blocking pop is renewed this often; a message still arrives the moment it
# is pushed, so only idle wake-ups get rarer: fifty idle workers should cost next to nothing.
IDLE_POP_S = 10.0
# The shortest blocking pop: Redis reads a zero timeout as "wait forever".
MIN_POP_S = 0.01
# How long past a pop's own timeout its reply may take before the connection counts as dead.
POP_REPLY_GRACE_S = 5.0
# After Redis refused or dropped the pop, wait this long before trying again.
RETRY_S = 1.0
# While stopping, how often the thread is asked again to leave its pop.
STOP_NUDGE_S = 0.2


class QueuePop:
    """Blocking pops from one Redis list on a connection of their own, endable from outside.

    A pop may wait up to `longest_pop_s`: the connection's socket timeout (redis-py's default
    is a few seconds) is set past that, or every idle pop would end in an error.
    """

    def __init__(self, client: redis.Redis, key: str, longest_pop_s: float = IDLE_POP_S) -> None:
        self.client = client
        self.key = key
        self.longest_pop_s = longest_pop_s
        pool = client.connection_pool
        self._connection: Any = pool.connection_class(
            **{**pool.connection_kwargs, "socket_timeout": longest_pop_s + POP_REPLY_GRACE_S}
        )
        self._client_id: int | None = None

    def next(self, timeout_s: float) -> bytes | None:
        """The next message, or None after `timeout_s` or once `interrupt` is called."""
        timeout_s = min(max(timeout_s, MIN_POP_S), self.longest_pop_s)
        try:
            self._client_id = blocking_client_id(self._connection)
            self._connection.send_command("BRPOP", self.key, f"{timeout_s:.3f}")
            reply = self._connection.read_response()
        except redis.RedisError:
            self.close()
            raise
        return None if reply is None else bytes(reply[1])

    @property
    def connection_id(self) -> int | None:
        """Redis's id of the pop's connection, once it has connected."""
        return self._client_id

    def interrupt(self) -> None:
        """End a pop that is waiting now, as if it had timed out (CLIENT UNBLOCK)."""
        if self._client_id is not None:
            self.client.client_unblock(self._client_id)

    def put_back(self, message: bytes) -> None:
        """Return a popped message to the head of the queue, where the pop took it from."""
        self.client.rpush(self.key, message)

    def close(self) -> None:
        """Drop the connection; the next pop connects again."""
        self._client_id = None
        self._connection.disconnect()


class TaskEventBatch:
    """Flower's task events for this worker's commands, published together every so often."""

    def __init__(self, app: Celery, hostname: str) -> None:
        self.connection = app.connection_for_write()
        self.dispatcher = app.events.Dispatcher(
            self.connection,
            hostname=hostname,
            enabled=bool(app.conf.worker_send_task_events),
            groups=["task"],
            buffer_group=["task"],
        )
        self.flush_at: float | None = None

    def send(self, event_type: str, **fields: Any) -> None:
        """Add an event to the batch; the first one of a batch sets when it goes out."""
        self.dispatcher.send(event_type, **fields)
        if self.flush_at is None:
            self.flush_at = time.monotonic() + EVENT_BATCH_S

    def wait_s(self, idle_s: float) -> float:
        """How long the thread may block before the batch is due, at most `idle_s`."""
        if self.flush_at is None:
            return idle_s
        return min(idle_s, self.flush_at - time.monotonic())

    def flush_if_due(self) -> None:
        """Publish the batch once its time has come."""
        if self.flush_at is not None and time.monotonic() >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        """Publish what the batch holds now."""
        self.flush_at = None
        try:
            self.dispatcher.flush()
        except Exception as e:  # the broker is away: Flower misses these, commands do not
            log.warning("task events not sent", extra={"error": str(e)})

    def close(self) -> None:
        """Publish what is left and release the connection."""
        self.flush()
        self.dispatcher.close()
        self.connection.release()


@dataclass(frozen=True)
class RunningCommand:
    """A running command as Celery's worker state lists a task: `celery inspect active` and
    Flower's worker page show it, and the worker's heartbeats count it."""

    id: str
    hostname: str
    queue: str
    time_start: float
    name: str = EXECUTE_TASK

    def info(self, safe: bool = False) -> dict[str, Any]:
        """What `inspect active` reports for it, in the shape of a Celery request's."""
        args: Any = repr([self.id]) if safe else [self.id]
        return {
            "id": self.id,
            "name": self.name,
            "args": args,
            "kwargs": "{}" if safe else {},
            "type": self.name,
            "hostname": self.hostname,
            "time_start": self.time_start,
            "acknowledged": True,  # the claim is the acknowledgement
            "delivery_info": {"exchange": "", "routing_key": self.queue, "priority": 0,
                              "redelivered": False},  # fmt: skip
            "worker_pid": os.getpid(),
        }


class CommandPump:
    """The thread that pops a device's queue and runs its commands one at a time."""

    def __init__(self, app: Celery, runtime: DeviceRuntime, hostname: str) -> None:
        self.app = app
        self.runtime = runtime
        self.hostname = hostname
        self.queue = device_queue(runtime.device)
        self.pop = QueuePop(runtime.live.redis, runtime.live.broker_queue_key(runtime.device))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start popping in a thread of its own."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="hwq-commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop popping; a command already running finishes first (its timeout bounds it)."""
        self._stopping.set()
        thread = self._thread
        while thread is not None and thread.is_alive():
            # With Redis away the pop fails by itself.
            with contextlib.suppress(redis.RedisError):
                self.pop.interrupt()
            thread.join(STOP_NUDGE_S)

    def _run(self) -> None:
        events = TaskEventBatch(self.app, self.hostname)
        context = {"device": self.runtime.device}
        try:
            while not self._stopping.is_set():
                try:
                    message = self.pop.next(events.wait_s(IDLE_POP_S))
                except redis.RedisError as e:
                    log.warning("device queue unreachable", extra={**context, "error": str(e)})
                    self._stopping.wait(RETRY_S)
                    continue
                if message is not None:
                    if self._stopping.is_set():
                        self._put_back(message)
                        break
                    self._run_message(message, events)
                events.flush_if_due()
        finally:
            events.close()
            self.pop.close()

    def _put_back(self, message: bytes) -> None:
        try:
            self.pop.put_back(message)
        except redis.RedisError as e:
            # Its command stays queued without a message: the reaper publishes it again.
            log.warning("message not put back", extra={"device": self.runtime.device,
                                                       "error": str(e)})  # fmt: skip

    def _run_message(self, message: bytes, events: TaskEventBatch) -> None:
        command_id = command_of(message)
        if command_id is None:
            log.warning("message dropped: not a command", extra={"device": self.runtime.device})
            return
        args = repr([command_id])
        events.send("task-received", uuid=command_id, name=EXECUTE_TASK, args=args,
                    kwargs="{}", root_id=command_id, parent_id=None, retries=0, eta=None,
                    expires=None)  # fmt: skip
        events.send("task-started", uuid=command_id)
        started = time.monotonic()
        running = RunningCommand(command_id, self.hostname, self.queue, time.time())
        worker_state.task_accepted(running)
        succeeded = False
        try:
            self.runtime.execute(command_id)
            succeeded = True
        except Exception as e:  # Redis failed under the runtime: the command's lease decides
            log.exception(
                "command not finished", extra={"device": self.runtime.device, "command": command_id}
            )
            events.send("task-failed", uuid=command_id, exception=repr(e),
                        traceback=traceback.format_exc())  # fmt: skip
        else:
            events.send("task-succeeded", uuid=command_id, result="None",
                        runtime=time.monotonic() - started)  # fmt: skip
        finally:
            worker_state.task_ready(running, successful=succeeded)

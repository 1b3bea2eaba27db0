"""A device worker's command thread: pops the device's queue and runs each command in turn.

The device worker is a Celery worker: its event loop carries the worker's name, heartbeats,
Flower and remote control. The device's commands do not go through that loop. Taking each
message through Celery's consumer (the loop's poll, the request, the hand-off to the pool
thread and back, the task events flushed on the loop) cost a device worker more CPU per
command than the command itself (bench/README.md). Here one thread pops the device's Celery
messages with a blocking pop (`queue_pop.py`), claims and runs each command, and shows it to
Flower as Celery would (`task_events.py`).

The semantics are those the worker had with kombu's ack emulation off: popping a message is
receiving it, and the claim is its acknowledgement. A message popped by a worker that dies
before claiming leaves its command queued with no message, which the reaper publishes again;
one popped while the worker is stopping goes back to the head of the queue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback

import redis
from celery import Celery
from celery.worker import state as worker_state

from tasks.celery_app import EXECUTE_TASK
from tasks.messages import command_of
from tasks.outcome_events import outcome_event
from tasks.queues import device_queue
from worker_host.device_runtime import DeviceRuntime, Outcome
from worker_host.queue_pop import IDLE_POP_S, QueuePop
from worker_host.task_events import RunningCommand, TaskEventBatch

log = logging.getLogger("hwq.device")

# After Redis refused or dropped the pop, wait this long before trying again.
RETRY_S = 1.0
# While stopping, how often the thread is asked again to leave its pop.
STOP_NUDGE_S = 0.2


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
        # The port is read from the start, not from the first command (DESIGN §9).
        try:
            self.runtime.start_reading()
        except Exception:  # the first command opens it then; the thread must run regardless
            log.exception("port not opened at start", extra={"device": self.runtime.device})
        while not self._stopping.is_set():
            try:
                self._serve()
            except Exception:  # a bug must not leave the device without its command thread
                log.exception("command thread failed; it starts again",
                              extra={"device": self.runtime.device})  # fmt: skip
                self._stopping.wait(RETRY_S)

    def _serve(self) -> None:
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
        received_at = time.time()
        started = time.monotonic()

        def announce() -> None:
            # Only a delivery that won the claim shows in Flower: a repeat, or a message of
            # another device's command, must not make the task look received or started here.
            events.send("task-received", uuid=command_id, name=EXECUTE_TASK,
                        args=repr([command_id]), kwargs="{}", root_id=command_id,
                        parent_id=None, retries=0, eta=None, expires=None,
                        timestamp=received_at)  # fmt: skip
            events.send("task-started", uuid=command_id)

        running = RunningCommand(command_id, self.hostname, self.queue, received_at)
        worker_state.task_accepted(running)
        outcome: Outcome | None = None
        try:
            outcome = self.runtime.execute(command_id, on_dispatched=announce)
        except Exception as e:  # Redis failed under the runtime: the command's lease decides
            log.exception(
                "command not finished", extra={"device": self.runtime.device, "command": command_id}
            )
            events.send("task-failed", uuid=command_id, exception=repr(e),
                        traceback=traceback.format_exc())  # fmt: skip
        else:
            # None: this delivery ran nothing, so it has no outcome to show.
            if outcome is not None and (
                event := outcome_event(outcome.state, outcome.reason, outcome.response)
            ):
                event_type, fields = event
                if event_type == "task-succeeded":
                    fields["runtime"] = time.monotonic() - started
                events.send(event_type, uuid=command_id, **fields)
        finally:
            worker_state.task_ready(running, successful=outcome is not None and outcome.answered)

"""A device worker's task events for Flower, published in batches rather than one by one.

Celery buffers task events (received, started, succeeded, …) and flushes the buffer at the
next turn of the worker's event loop, so each command costs three separate publishes to
Redis: a quarter of a device worker's CPU per command. Flower needs the events, not their
immediacy, so here the first buffered event arms a short timer and the flush publishes all
that gathered meanwhile as one message. Each event keeps the time it was made at.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

log = logging.getLogger("hwq.device")

# How long task events may wait to share a publish; Flower shows them this much later.
EVENT_BATCH_S = 0.2


class BatchedTaskEvents(bootsteps.StartStopStep):
    """Makes the consumer's event dispatcher flush on a timer instead of every loop turn."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.armed = False

    def start(self, consumer: Any) -> None:
        dispatcher, hub = consumer.event_dispatcher, consumer.hub
        # Without an event loop (or with events off) Celery publishes directly: nothing to do.
        if dispatcher is None or hub is None or dispatcher.on_send_buffered is None:
            return
        self.armed = False

        def flush() -> None:
            self.armed = False
            consumer._flush_events()

        def arm() -> None:
            # Runs on the loop thread only, so the flag needs no lock.
            if not self.armed:
                self.armed = True
                hub.call_later(EVENT_BATCH_S, flush)

        def on_send_buffered() -> None:
            # Events are sent from the pool thread too; call_soon is the thread-safe way in,
            # but it wakes the loop, which then contends for the GIL with the command just
            # starting. While a flush is armed it will carry this event: the flush clears the
            # flag before it reads the buffer, and the event joined the buffer before this
            # read of the flag, so skipping here loses nothing.
            if not self.armed:
                hub.call_soon(arm)

        dispatcher.on_send_buffered = on_send_buffered

    def stop(self, consumer: Any) -> None:
        self._flush(consumer)

    def shutdown(self, consumer: Any) -> None:
        self._flush(consumer)

    def _flush(self, consumer: Any) -> None:
        # What waits in the buffer would otherwise be dropped when the dispatcher closes.
        if consumer.event_dispatcher is not None:
            try:
                consumer.event_dispatcher.flush()
            except Exception as e:  # the broker is gone; the events go with it
                log.warning(
                    "task events not sent", extra={"worker": consumer.hostname, "error": str(e)}
                )
